"""Is the recovered trajectory one a hand could have moved? (issue 24, part 1: continuity as a check)

Structure from motion can *fold* a walk around a near-symmetric object on a repetitive floor: a
stretch of the walk is placed mirrored on the other side of the object, where the images look the
same. Every stretch is locally consistent (low reprojection error), so nothing else in the report
shows it. But a video carries its own time order, and so do photos whose names are numbered, and a
folded trajectory jumps where a real one moves a little.

**Order.** :func:`capture_order` orders the images by the number in their names: the last run of
digits, compared as an integer (natural order: ``frame_2`` before ``frame_10``). Names that differ
only in that number form one sequence (``frame_#.jpg``, ``IMG_#.JPG``, ``#.jpg``, ``a/DSC_#.jpg``);
each sequence of at least :data:`MIN_SEQUENCE` images is checked on its own, and images whose names
carry no number, or whose pattern has fewer images, are left out (counted in the report). The video
frames of ``process`` are named ``frame_NNNNNN.jpg`` with NNNNNN the frame's index in the video, so
a video is one sequence whose numbers are frame indices. EXIF times are not used.

**Measure.** Between consecutive *registered* images of a sequence (an unregistered image in between
is skipped): the step, the distance between the camera centres, and the view change, the angle
between the two optical axes in degrees. Both are divided by the index gap (the difference of the
numbers: video frames, or photo numbers) to give a rate per index, so frames that are further apart
in time, or a frame that did not register in between, are allowed proportionally more.

**Threshold.** A step is a jump when

    step > max(RATIO * ref_step * gap, STEP_FLOOR * spread)

with ``ref_step = max(global median rate, median rate of the WINDOW steps on either side)``; and
likewise for the view change with the floor :data:`VIEW_FLOOR_DEG` degrees. ``spread`` is the RMS
distance of the registered centres from their centroid. The global median makes the allowance
robust to the jump itself (a few jumps do not move a median); the local median lets a capture speed
up for a while (walking faster, a quick pan) without an alarm; the floors keep a still camera, whose
median step is nearly zero, from alarming on noise. A fold gives step ratios of tens and view
changes of 90-180 degrees; the real captures here stay under 3 (docs/data.md). The report's
``step_ratio`` and ``view_ratio`` are always against the global median (``max_step_ratio`` <= 3 means
no step is longer than three median steps); a jump found through them is a jump on both counts.

**Photos.** A video is a continuous path by physics; numbered photos need not be: a photographer
may step elsewhere between two shots (cup's 77 photos jump at 12 of 76 steps in name order, at
both ends of a reposition, with step ratios up to 21 and view changes up to 99 degrees, although
its poses are right). So for photos the name order is trusted as a path only when at most
:data:`PHOTO_MAX_JUMP_FRACTION` of its steps jump; then its jumps are warnings as for a video
(a folded photo set jumps at a few places), otherwise the report says the order is not a path and
nothing is warned (``warning: false``; the measured jumps are still listed).

**Segments.** The registered images of each sequence, split at its jumps: a fold of one stretch gives
three segments (before, folded, after), two clips joined into one video give two.
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

RATIO = 3.0
STEP_FLOOR = 0.02  # fraction of the camera spread
VIEW_FLOOR_DEG = 15.0
WINDOW = 5  # steps on either side for the local median
MIN_SEQUENCE = 4  # images in a naming pattern for it to be checked
#: photos: the name order is trusted as a path (and its jumps warned about) only when at most this
#: fraction of its steps jump; a photographer may walk elsewhere between shots (cup: 12 of 76)
PHOTO_MAX_JUMP_FRACTION = 0.10

_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")


def natural_key(name: str):
    """Sort key that compares runs of digits as numbers (``frame_2`` < ``frame_10``)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def capture_order(names: Sequence[str]) -> Tuple[List[List[Tuple[str, int]]], List[str]]:
    """``(sequences, left_out)``: each sequence a list of ``(name, number)`` in natural order, one per
    naming pattern with at least :data:`MIN_SEQUENCE` images and distinct numbers; ``left_out`` the
    names in no sequence."""
    groups: Dict[str, List[Tuple[str, int]]] = {}
    left_out: List[str] = []
    for name in names:
        m = _LAST_NUMBER.match(name)
        if m is None:
            left_out.append(name)
            continue
        groups.setdefault(m.group(1) + "#" + m.group(3), []).append((name, int(m.group(2))))
    sequences = []
    for pattern in sorted(groups):
        members = groups[pattern]
        numbers = [k for _, k in members]
        if len(members) < MIN_SEQUENCE or len(set(numbers)) != len(numbers):
            left_out.extend(n for n, _ in members)
            continue
        sequences.append(sorted(members, key=lambda item: item[1]))
    return sequences, sorted(left_out, key=natural_key)


def _pattern(sequence: Sequence[Tuple[str, int]]) -> str:
    m = _LAST_NUMBER.match(sequence[0][0])
    return m.group(1) + "#" + m.group(3) if m else sequence[0][0]


def _local_median(rates: np.ndarray, k: int, window: int) -> float:
    lo, hi = max(0, k - window), min(len(rates), k + window + 1)
    others = np.concatenate([rates[lo:k], rates[k + 1:hi]])
    return float(np.median(others)) if others.size else 0.0


def check_continuity(names: Sequence[str], c2w: Mapping[str, np.ndarray], kind: str = "video",
                     ratio: float = RATIO, step_floor: float = STEP_FLOOR, view_floor_deg: float = VIEW_FLOOR_DEG,
                     window: int = WINDOW) -> dict:
    """Check the trajectory of ``c2w`` (name -> 4x4 or 3x4 camera-to-world; any axis convention whose
    third column is the optical axis up to sign) in the capture order of ``names`` (all images given to
    structure from motion, registered or not). ``kind``: "video" (frame order is time order: jumps are
    always warnings) or "images" (numbered photos: warnings only when the order is a path, see the
    module docstring).

    Returns the report's ``continuity`` section (see the module docstring)."""
    sequences, left_out = capture_order(list(names))
    out: dict = {"checked": False,
                 "kind": kind, "warning": False,
                 "order": ("video frame order (frame_N: N = the frame's index in the video)" if kind == "video" else
                           "natural name order within each numbered name pattern (EXIF times not used)"),
                 "threshold": {"ratio": ratio, "step_floor_fraction_of_spread": step_floor,
                               "view_floor_deg": view_floor_deg, "local_window": window,
                               "rule": "jump: step > max(ratio * max(global, local median step per index) * "
                                       "index gap, floor * spread), or the same for the view change"},
                 "sequences": [], "images_not_in_order": len(left_out), "jumps": [], "segments": []}
    # pairs of consecutive registered images within each sequence
    pairs = []  # (sequence index, name a, name b, gap)
    for s, seq in enumerate(sequences):
        reg = [(n, k) for n, k in seq if n in c2w]
        out["sequences"].append({"pattern": _pattern(seq), "images": len(seq), "registered": len(reg)})
        for (na, ka), (nb, kb) in zip(reg, reg[1:]):
            pairs.append((s, na, nb, kb - ka))
    if len(pairs) < 3:
        out["reason"] = ("fewer than 3 steps between consecutive registered images in a numbered order"
                         if sequences else "the image names carry no order (no numbered name pattern with "
                         f"at least {MIN_SEQUENCE} images)")
        return out

    registered = [n for n in names if n in c2w]
    centres = {n: np.asarray(c2w[n], float)[:3, 3] for n in registered}
    axes = {}
    for n in registered:
        z = np.asarray(c2w[n], float)[:3, 2]
        axes[n] = z / max(np.linalg.norm(z), 1e-12)
    all_c = np.stack([centres[n] for n in registered])
    spread = float(np.sqrt(((all_c - all_c.mean(0)) ** 2).sum(1).mean()))
    seq_of = np.array([p[0] for p in pairs])
    gaps = np.array([max(1, p[3]) for p in pairs], float)
    steps = np.array([np.linalg.norm(centres[b] - centres[a]) for _, a, b, _ in pairs])
    views = np.degrees(np.arccos(np.clip([float(axes[a] @ axes[b]) for _, a, b, _ in pairs], -1.0, 1.0)))
    step_rate, view_rate = steps / gaps, views / gaps
    med_step, med_view = float(np.median(step_rate)), float(np.median(view_rate))
    tiny = 1e-12 * max(spread, 1e-12)
    step_ratio = step_rate / max(med_step, tiny)
    view_ratio = view_rate / max(med_view, 1e-9)

    jump = np.zeros(len(pairs), bool)
    reasons: List[List[str]] = [[] for _ in pairs]
    for s in range(len(sequences)):
        idx = np.flatnonzero(seq_of == s)
        for j, k in enumerate(idx):
            ref_s = max(med_step, _local_median(step_rate[idx], j, window))
            ref_v = max(med_view, _local_median(view_rate[idx], j, window))
            if steps[k] > max(ratio * ref_s * gaps[k], step_floor * spread):
                reasons[k].append("step")
            if views[k] > max(ratio * ref_v * gaps[k], view_floor_deg):
                reasons[k].append("view")
            jump[k] = bool(reasons[k])

    for k in np.flatnonzero(jump):
        _, a, b, gap = pairs[k]
        out["jumps"].append({"from": a, "to": b, "index_gap": int(gap), "step": float(steps[k]),
                             "step_ratio": float(step_ratio[k]), "view_change_deg": float(views[k]),
                             "view_ratio": float(view_ratio[k]), "reason": "+".join(reasons[k])})
    for s, seq in enumerate(sequences):
        reg = [n for n, _ in seq if n in c2w]
        if not reg:
            continue
        starts = [0] + [reg.index(pairs[k][2]) for k in np.flatnonzero(jump & (seq_of == s))]
        ends = starts[1:] + [len(reg)]
        for i0, i1 in zip(starts, ends):
            out["segments"].append({"first": reg[i0], "last": reg[i1 - 1], "registered": i1 - i0})
    n_jumps = int(jump.sum())
    order_is_path = kind == "video" or n_jumps <= PHOTO_MAX_JUMP_FRACTION * len(pairs)
    out.update(checked=True, order_is_path=order_is_path, warning=bool(order_is_path and n_jumps),
               steps=len(pairs), spread=spread, median_step=med_step,
               median_view_change_deg=med_view, max_step_ratio=float(step_ratio.max()),
               max_view_change_deg=float(views.max()), max_view_ratio=float(view_ratio.max()))
    return out


def summary_lines(section: dict) -> List[str]:
    """One warning line per jump, then one summary line (what ``process`` prints)."""
    lines = []
    for j in section.get("jumps", []) if section.get("warning") else []:
        lines.append(f"warning: trajectory jumps between {j['from']} and {j['to']}: step {j['step_ratio']:.1f}x "
                     f"the median, view change {j['view_change_deg']:.0f} deg over {j['index_gap']} frame(s) "
                     "(a folded reconstruction or a cut in the input)")
    if not section.get("checked"):
        lines.append(f"continuity: not checked ({section.get('reason', '')})")
    else:
        n = len(section["jumps"])
        verdict = ("no jumps" if n == 0 else
                   f"{n} jumps: the photos' name order is not one path (more than "
                   f"{PHOTO_MAX_JUMP_FRACTION:.0%} of the steps jump), so they are not taken as a fold; "
                   "no warning" if not section.get("order_is_path", True) else
                   f"{n} jump{'s' if n != 1 else ''}: the trajectory splits into {len(section['segments'])} segments; "
                   "its poses are suspect (see process_report.json 'continuity', the jumps are drawn in "
                   "process_frusta.png)")
        lines.append(f"continuity: {section['steps']} steps, max step {section['max_step_ratio']:.1f}x the median, "
                     f"max view change {section['max_view_change_deg']:.0f} deg: {verdict}")
    return lines


def jump_pairs(section: Optional[dict]) -> List[Tuple[str, str]]:
    """The jumps warned about (what the frusta PNG marks): none when ``warning`` is false."""
    section = section or {}
    return [(j["from"], j["to"]) for j in section.get("jumps", [])] if section.get("warning") else []
