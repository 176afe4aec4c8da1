"""A minimal OpenEXR reader (scanline images; NONE, ZIPS and ZIP compression; half/float/uint).

Used when neither imageio nor OpenCV can open ``.exr`` (imageio needs the FreeImage/pyav plugins,
OpenCV wheels ship without OpenEXR). Tiled, multi-part, deep, PIZ/PXR24/B44/DWA files raise a
:class:`DatasetError` that says so.

File layout (openexr.com, "OpenEXR File Layout"): magic ``76 2f 31 01``, version int, header
attributes ``name\\0 type\\0 int32 size value`` until an empty name, a table of uint64 offsets (one
per block of scanlines), then blocks ``int32 y, int32 size, data``. Uncompressed block data is, per
scanline, each channel (sorted by name) for the whole width. ZIP(S): zlib, then undo the byte
predictor ``t[i] = t[i-1] + d[i] - 128`` and the split of even/odd bytes into two halves.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Dict

import numpy as np

from ..errors import DatasetError

_LINES = {0: 1, 2: 1, 3: 16}            # compression -> scanlines per block
_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}


def _zip_decode(raw: bytes, size: int) -> bytes:
    d = np.frombuffer(zlib.decompress(raw), np.uint8)
    if len(d) != size:
        raise ValueError(f"decompressed {len(d)} bytes, expected {size}")
    t = (np.cumsum(d.astype(np.int64) - 128) + 128) & 0xFF     # t[0] = d[0]; t[i] = t[i-1] + d[i] - 128
    t = t.astype(np.uint8)
    half = (size + 1) // 2
    out = np.empty(size, np.uint8)
    out[0::2], out[1::2] = t[:half], t[half:]
    return out.tobytes()


def read_exr(path) -> Dict[str, np.ndarray]:
    """``{channel name: float32 array [H, W]}`` of a scanline EXR file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        if data[:4] != b"\x76\x2f\x31\x01":
            raise ValueError("not an OpenEXR file (bad magic number)")
        version = struct.unpack_from("<I", data, 4)[0]
        if version & (0x200 | 0x800 | 0x1000):      # tiled, deep, multi-part flags
            raise ValueError("tiled, deep and multi-part EXR files are not supported")
        pos, attrs = 8, {}
        while data[pos] != 0:
            end = data.index(b"\0", pos)
            name = data[pos:end].decode()
            tend = data.index(b"\0", end + 1)
            typ = data[end + 1:tend].decode()
            size = struct.unpack_from("<i", data, tend + 1)[0]
            attrs[name] = (typ, data[tend + 5:tend + 5 + size])
            pos = tend + 5 + size
        pos += 1
        chans, raw = [], attrs["channels"][1]
        p = 0
        while raw[p] != 0:
            end = raw.index(b"\0", p)
            ptype, _, _, xs, ys = struct.unpack_from("<iB3sii", raw, end + 1)
            if (xs, ys) != (1, 1):
                raise ValueError("subsampled channels are not supported")
            chans.append((raw[p:end].decode(), _TYPES[ptype]))
            p = end + 1 + 16
        comp = attrs["compression"][1][0]
        if comp not in _LINES:
            raise ValueError(f"compression {comp} not supported (NONE, ZIPS, ZIP only)")
        x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"][1])
        W, H = x1 - x0 + 1, y1 - y0 + 1
        lines = _LINES[comp]
        n_blocks = (H + lines - 1) // lines
        offsets = struct.unpack_from(f"<{n_blocks}Q", data, pos)
        row_bytes = sum(W * dt.itemsize for _, dt in chans)
        out = {name: np.empty((H, W), np.float32) for name, _ in chans}
        for off in offsets:
            y, size = struct.unpack_from("<ii", data, off)
            n = min(lines, y1 - y + 1)
            block = data[off + 8:off + 8 + size]
            if size < n * row_bytes:
                block = _zip_decode(block, n * row_bytes)
            b = 0
            for r in range(n):
                for name, dt in chans:
                    out[name][y - y0 + r] = np.frombuffer(block, dt, W, b)
                    b += W * dt.itemsize
        return out
    except DatasetError:
        raise
    except (ValueError, KeyError, IndexError, struct.error, zlib.error) as e:
        raise DatasetError(path, f"cannot read EXR: {e}") from None
