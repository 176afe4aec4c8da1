"""Training images out of core: decoded once into a uint8 file at the training resolution, read from there.

The ray sampler (:class:`~nerf_app.data.rays.RaySampler`) packs a split's pixels into one ``sum(H*W) x C`` uint8
array and gathers each batch's rows from it. In RAM that array (plus the decoded images on the way) grows with
the photo count; here it is a file, and :class:`FilePixels` gathers a batch's rows from it:

* a file of at most :data:`MAP_BYTES` is memory-mapped: once its pages are touched a gather is as fast as from
  RAM, and the resident pages are at most the file's size;
* a larger one is read row by row with ``pread`` (one system call per ray, ~1.5 us; it goes through the page
  cache, which the kernel owns and drops under pressure, and maps nothing into the process). A mapping could
  not bound the resident set: a fault maps the whole page-cache folio around the row (measured on this
  project's box, kernel 6.18: 4,096 random rows of a 2 GiB file left all 2 GiB resident in the mapping), so
  a 12 GB capture's cache grew the process's RSS to its whole size whatever was handed back between batches.

The file is named by a key over what its bytes depend on - per image the file's path, size and modification
time, its source and training sizes - so a run at another ``data.downscale``, or after an image is replaced,
builds a new one, and every later run with the same images opens the finished file at once. It is written to a
temporary name and renamed (two runs building it at once both finish; one file stays). Built one image at a
time: the build's own memory is one decoded photo.

Where: ``data.cache`` (nerf): ``auto`` (the default) caches only when the decoded training pixels exceed
:data:`AUTO_BYTES`, in ``CAPTURE/.nerf_app_cache/``; ``always`` there whatever the size; ``none`` keeps them in
RAM; any other value is a folder. A folder that cannot be written falls back to RAM with one line.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .images import ImageStore, decode, header_info, resize_area

#: ``data.cache: auto`` maps the pixels from disk above this many decoded bytes (below, RAM is cheaper than a file)
AUTO_BYTES = 1 << 30
#: a cache file up to this size is memory-mapped (resident pages: at most the file); a larger one is read with pread
MAP_BYTES = 1 << 30
#: bytes per read when a whole file goes to a device (the host holds one such chunk at a time)
CHUNK_BYTES = 64 << 20
#: pixels per block of the kept-pixel bit file (masks): a masked draw reads one block (MASK_BLOCK / 8 bytes) and
#: RAM holds one int64 count per block (1/64 byte per pixel; the RAM path's index holds 8 bytes per kept pixel)
MASK_BLOCK = 512
FOLDER_NAME = ".nerf_app_cache"
VERSION = 1


def cache_folder(setting: str, capture_root: Path, total_bytes: int) -> Optional[Path]:
    """The folder ``data.cache`` asks for with this many decoded bytes, or None (keep the pixels in RAM)."""
    setting = str(setting).strip()
    if setting == "none" or (setting == "auto" and total_bytes <= AUTO_BYTES):
        return None
    if setting in ("auto", "always"):
        return Path(capture_root) / FOLDER_NAME
    return Path(setting).expanduser()


#: a pread gather of at least this many rows is split over READ_THREADS threads: rows not in the page cache are
#: disk reads, and one thread waits for each in turn (a 12 GB cache on this box: 4,096 rows in 130-210 ms from one
#: thread, 20-45 ms from 16); rows in the page cache cost ~5 ms more per 4,096 that way
PARALLEL_ROWS = 1024
READ_THREADS = 16
_POOL = None


def _reader_pool():
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="nerf_app_pixel_reads")
    return _POOL


class FilePixels:
    """The rows ``[n, C]`` uint8 of a finished cache file, gathered like a tensor's: ``pixels[flat]`` with ``flat`` an
    int64 CPU tensor of row indices gives a ``[len(flat), C]`` uint8 tensor (see the module docstring for how)."""

    def __init__(self, path: Path, n: int, channels: int):
        self.path = Path(path)
        self.shape = (int(n), int(channels))
        self._mapped: Optional[torch.Tensor] = None
        self._fd = os.open(self.path, os.O_RDONLY)
        if n * channels <= MAP_BYTES:
            # copy-on-write: a writable array for torch, and nothing is ever written back to the file
            self._mapped = torch.from_numpy(np.memmap(self.path, dtype=np.uint8, mode="c", shape=self.shape))
        elif hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)  # a batch reads scattered rows: no read-ahead

    @property
    def mapped(self) -> bool:
        return self._mapped is not None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, flat: torch.Tensor) -> torch.Tensor:
        if self._mapped is not None:
            return self._mapped[flat]
        c, fd = self.shape[1], self._fd
        offsets = (torch.as_tensor(flat, dtype=torch.int64).reshape(-1) * c).tolist()

        def read(part: List[int]) -> bytes:
            return b"".join([os.pread(fd, c, o) for o in part])

        if len(offsets) >= PARALLEL_ROWS:  # several reads in flight: the disk answers them together
            size = -(-len(offsets) // READ_THREADS)
            data = bytearray(b"".join(_reader_pool().map(read, [offsets[a:a + size]
                                                                 for a in range(0, len(offsets), size)])))
        else:
            data = bytearray(read(offsets))
        if len(data) != len(offsets) * c:
            raise OSError(f"{self.path}: short read (the cache file changed while training?)")
        return torch.frombuffer(data, dtype=torch.uint8).view(len(offsets), c)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``[start, stop)`` read in one call (not mapped)."""
        c = self.shape[1]
        data = bytearray(os.pread(self._fd, (stop - start) * c, start * c))
        return torch.frombuffer(data, dtype=torch.uint8).view(-1, c)

    def to_device(self, device: torch.device) -> torch.Tensor:
        """The whole array in ``device``'s memory, read in chunks of :data:`CHUNK_BYTES` (a GPU gathers from there)."""
        out = torch.empty(self.shape, dtype=torch.uint8, device=device)
        step = max(1, CHUNK_BYTES // self.shape[1])
        for a in range(0, self.shape[0], step):
            b = min(self.shape[0], a + step)
            out[a:b] = self.rows(a, b).to(device)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _key(store: ImageStore, indices: Sequence[int], channels: int) -> str:
    h = hashlib.sha256(f"nerf_app pixel cache v{VERSION} channels {channels}\n".encode())
    for i in indices:
        p = Path(store.paths[int(i)])
        st = p.stat()
        h.update(json.dumps([str(p.resolve()), st.st_size, st.st_mtime_ns, list(store.source_sizes[int(i)]),
                             list(store.sizes[int(i)])]).encode() + b"\n")
    return h.hexdigest()[:24]


def _decode_resized(store: ImageStore, i: int) -> np.ndarray:
    """Image ``i`` at the store's resolution, checked like :meth:`ImageStore.load`, without the store's RAM cache."""
    from ..errors import DatasetError
    img = decode(store.paths[i])
    expected = store.source_sizes[i]
    if (img.shape[1], img.shape[0]) != tuple(expected):
        raise DatasetError(store.paths[i], f"image is {img.shape[1]}x{img.shape[0]} but its camera says "
                           f"{expected[0]}x{expected[1]}", "size")
    return resize_area(img, *store.sizes[i])


def header_channels(store: ImageStore, indices: Sequence[int]) -> int:
    """4 when any of the images has an alpha channel (from the file headers), else 3."""
    return 4 if any(header_info(Path(store.paths[int(i)]))[2] for i in indices) else 3


def write_file(folder: Path, path: Path, write: Callable[[object], bool], log: Callable[[str], None]) -> Optional[bool]:
    """Build ``path`` in ``folder`` through ``write(file)`` (written in order with plain writes, so the build maps
    nothing into the process), under a temporary name renamed at the end. True when built; False when ``write``
    gave up (nothing left behind); None with one line through ``log`` when the folder or the file cannot be
    written (the caller keeps the data in RAM)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        f = open(tmp, "wb")
    except OSError as exc:
        log(f"[data] image cache {folder}: cannot write there ({exc.strerror or exc}); the training images "
            f"stay in RAM")
        return None
    try:
        with f:
            done = write(f)
        if not done:
            tmp.unlink(missing_ok=True)
            return False
        os.replace(tmp, path)
        return True
    except OSError as exc:  # a full disk while building: RAM instead
        tmp.unlink(missing_ok=True)
        log(f"[data] image cache {folder}: cannot write {path.name} ({exc.strerror or exc}); the training "
            f"images stay in RAM")
        return None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cached_pixels(store: ImageStore, indices: Sequence[int], offsets: np.ndarray, folder: Path,
                  log: Callable[[str], None]) -> Optional[Tuple[FilePixels, int]]:
    """``(pixels [sum(H*W), C] read from the cache file, C)`` for images ``indices`` packed at ``offsets``, built in
    ``folder`` on first use; None (with one line through ``log``) when the folder cannot be written."""
    channels = header_channels(store, indices)
    for _ in range(2):  # a header that hid an alpha channel: rebuilt once with 4 channels
        key = _key(store, indices, channels)
        path = Path(folder) / f"pixels-{key}.u8"
        n = int(offsets[-1])
        if path.is_file() and path.stat().st_size == n * channels:
            return FilePixels(path, n, channels), channels
        start = time.perf_counter()

        def write(f) -> bool:
            for k, i in enumerate(indices):
                im = _decode_resized(store, int(i))
                flat = im.reshape(-1, im.shape[2])
                if flat.shape[1] > channels:
                    return False
                if flat.shape[1] < channels:  # RGB among RGBA images: opaque
                    flat = np.concatenate([flat, np.full((len(flat), 1), 255, np.uint8)], 1)
                f.write(np.ascontiguousarray(flat).data)
            return True

        built = write_file(Path(folder), path, write, log)
        if built is None:
            return None
        if not built:  # an alpha channel the headers did not announce
            channels = 4
            continue
        log(f"[data] image cache: {len(indices)} images, {n * channels / 2 ** 20:.0f} MiB in "
            f"{time.perf_counter() - start:.1f} s -> {path}")
        return FilePixels(path, n, channels), channels
    raise AssertionError("unreachable")


_POPCOUNT = torch.tensor([bin(v).count("1") for v in range(256)], dtype=torch.int64)
#: [v, k]: the position of byte v's k-th set bit (bit 0 = the first pixel; 8 where v has no k-th)
_NTH_BIT = torch.tensor([[([b for b in range(8) if v >> b & 1] + [8] * 8)[k] for k in range(8)] for v in range(256)],
                        dtype=torch.int64)


class KeptPixels:
    """The kept pixels of masked training images, out of core: one bit per packed pixel (1 = keep) in blocks of
    :data:`MASK_BLOCK` in a file, and the number of kept pixels before each block in RAM. ``kept[r]`` (``r`` an
    int64 CPU tensor) is the flat index of the ``r``-th kept pixel - what ``np.flatnonzero(keep)[r]`` gives, so a
    sampler draws the same pixels as from the RAM path's index."""

    def __init__(self, path: Path, n_pixels: int):
        blocks = -(-int(n_pixels) // MASK_BLOCK)
        self.path, self.n_pixels = Path(path), int(n_pixels)
        self.counts = torch.from_numpy(np.fromfile(path, dtype=np.int64, offset=blocks * MASK_BLOCK // 8))
        self._bits = FilePixels(path, blocks, MASK_BLOCK // 8)  # rows = blocks; the counts after them unread

    @staticmethod
    def file_bytes(n_pixels: int) -> int:
        blocks = -(-int(n_pixels) // MASK_BLOCK)
        return blocks * MASK_BLOCK // 8 + 8 * (blocks + 1)

    def numel(self) -> int:
        return int(self.counts[-1])

    @property
    def nbytes(self) -> int:
        """Bytes this index holds in RAM."""
        return int(self.counts.nbytes)

    def __getitem__(self, r: torch.Tensor) -> torch.Tensor:
        r = torch.as_tensor(r, dtype=torch.int64).reshape(-1)
        block = torch.searchsorted(self.counts, r, right=True) - 1  # counts[block] <= r < counts[block + 1]
        nth = r - self.counts[block]                               # 0-based among the block's set bits
        bits = self._bits[block].long()                            # [n, MASK_BLOCK / 8] bytes, bit 0 first
        before = _POPCOUNT[bits].cumsum(1)                         # set bits up to and including each byte
        byte = (before <= nth[:, None]).sum(1)                     # the byte holding the nth set bit
        nth = nth - torch.where(byte > 0, before.gather(1, (byte - 1).clamp(min=0)[:, None])[:, 0], 0)
        bit = _NTH_BIT[bits.gather(1, byte[:, None])[:, 0], nth]
        return block * MASK_BLOCK + byte * 8 + bit

    def to_device(self, device: torch.device) -> torch.Tensor:
        """The RAM path's index (int64 flat indices of the kept pixels) in ``device``'s memory, built block-wise."""
        parts, step = [], max(1, CHUNK_BYTES // (MASK_BLOCK // 8))
        for a in range(0, len(self._bits), step):
            bits = np.unpackbits(self._bits.rows(a, min(len(self._bits), a + step)).numpy().reshape(-1),
                                 bitorder="little")
            parts.append(torch.from_numpy(np.flatnonzero(bits) + a * MASK_BLOCK).to(device))
        return torch.cat(parts)


def _mask_key(store: ImageStore, indices: Sequence[int]) -> str:
    h = hashlib.sha256(f"nerf_app kept-pixel cache v{VERSION} block {MASK_BLOCK}\n".encode())
    for i in indices:
        p = Path(store.mask_paths[int(i)])
        st = p.stat()
        h.update(json.dumps([str(p.resolve()), st.st_size, st.st_mtime_ns, list(store.source_sizes[int(i)]),
                             list(store.sizes[int(i)])]).encode() + b"\n")
    return h.hexdigest()[:24]


def cached_kept(store: ImageStore, indices: Sequence[int], offsets: np.ndarray, folder: Path,
                log: Callable[[str], None]) -> Optional[KeptPixels]:
    """The kept pixels of images ``indices`` (packed at ``offsets``) from their masks, as a :class:`KeptPixels`
    file built in ``folder`` on first use (one mask decoded at a time); None (with one line) when the folder
    cannot be written."""
    n = int(offsets[-1])
    path = Path(folder) / f"kept-{_mask_key(store, indices)}.bits"
    if path.is_file() and path.stat().st_size == KeptPixels.file_bytes(n):
        return KeptPixels(path, n)
    start = time.perf_counter()

    def write(f) -> bool:
        pending, sums = np.zeros(0, bool), []

        def blocks(bits: np.ndarray) -> None:  # whole blocks of bits -> the file, their counts -> sums
            f.write(np.packbits(bits, bitorder="little").data)
            sums.append(bits.reshape(-1, MASK_BLOCK).sum(1, dtype=np.int64))

        for k, i in enumerate(indices):
            m = store.mask(int(i))
            m = np.ones(int(offsets[k + 1] - offsets[k]), bool) if m is None else m.reshape(-1)
            pending = np.concatenate([pending, m])
            whole = len(pending) // MASK_BLOCK * MASK_BLOCK
            if whole:
                blocks(pending[:whole])
                pending = pending[whole:]
        if len(pending):
            blocks(np.concatenate([pending, np.zeros(MASK_BLOCK - len(pending), bool)]))
        f.write(np.concatenate([[0], np.cumsum(np.concatenate(sums))]).astype(np.int64).data)
        return True

    if write_file(Path(folder), path, write, log) is None:
        return None
    log(f"[data] mask cache: {len(indices)} masks, {path.stat().st_size / 2 ** 20:.1f} MiB in "
        f"{time.perf_counter() - start:.1f} s -> {path}")
    return KeptPixels(path, n)
