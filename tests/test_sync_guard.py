"""The CPU guard of the GPU training step's host synchronisations (tests/sync_budget.py).

A NeRF training step on a GPU may wait for the host at most twice: the march's sample count
(csrc/march.cpp sizes its outputs with it) and the trainer's one read of the loss and gradient
finiteness. Only a GPU can measure synchronisations (tests/test_gpu_training_step.py), but every host read
the step's code makes is visible on the CPU too: the real Trainer loop runs here under a counter of
``.item()`` / ``float()`` / ``bool()`` / ``.tolist()`` / ``.numpy()``, data-dependent sizes (``nonzero``,
boolean masks, ``unique``) and tensors made from host data, and the test fails when a step makes more
than two, or one anywhere but the two places above. What it cannot see: code that runs only on CUDA
(the CUDA branches of the C++ glue, Adam's fused CUDA kernel), which the GPU test covers.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import requires_cpp
from sync_budget import ALLOWED_SITES, DEMO, MAX_READS_PER_STEP, HostReadCounter, run_training

STEPS = 5            # step 0 updates the occupancy grid, the last one logs: steps 1..3 are plain steps
PLAIN_STEPS = range(1, STEPS - 1)


def small_config(input_path, **overrides):
    """The default settings of a scene, made small (the reads do not depend on sizes), with compaction off
    as it is on CUDA by default (its marching rounds read the host by design, docs/training.md)."""
    from nerf_app.nerf.config import NerfConfig
    from nerf_app.train.config import apply_overrides

    cfg = NerfConfig(input=str(input_path))
    settings = {"device": "cpu", "rays.train_compact": "never", "data.downscale": 4,
                "rays.target_samples": 8192, "rays.initial_rays": 256, "rays.min_rays": 64,
                "grid.update_every": 1000, "grid.resolution": 32, "model.log2_hashmap_size": 14,
                "model.n_levels": 8}
    settings.update(overrides)
    apply_overrides(cfg, [f"{k}={v}" for k, v in settings.items()])
    return cfg


# the default synthetic setting (a bounded object, RGBA photos, random backgrounds) and the default
# real-capture setting (COLMAP with sparse points: per-image appearance, distortion and free-space losses,
# near planes from the points, cone steps), plus pose refinement and a fixed background
SETTINGS = {
    "synthetic": (DEMO / "transforms_train.json", {}),
    "capture": (DEMO, {}),
    "capture-poses-white": (DEMO, {"cameras.optimize": "true", "data.background": "white"}),
}


def _format(reads) -> str:
    return "; ".join(f"{kind} at {site}" for kind, site in reads) or "none"


@requires_cpp
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_training_step_reads_the_host_at_most_twice(setting, tmp_path):
    path, overrides = SETTINGS[setting]
    reads, task = run_training(small_config(path, **overrides), tmp_path / "run", STEPS)
    if setting.startswith("capture"):  # the real-capture terms are what this setting is for
        assert task.use_appearance and task.distortion_weight > 0 and task.free_space_weight > 0 \
            and task.near_images is not None
    assert not task.train_compact and task.sampler.device.type == "cpu"
    problems = []
    for step in PLAIN_STEPS:
        foreign = [r for r in reads[step] if not r[1].startswith(tuple(ALLOWED_SITES))]
        if len(reads[step]) > MAX_READS_PER_STEP or foreign:
            problems.append(f"step {step}: {len(reads[step])} host reads ({_format(reads[step])})")
    assert not problems, (f"a training step may read the host {MAX_READS_PER_STEP} times, only at "
                          f"{', '.join(ALLOWED_SITES)}:\n" + "\n".join(problems))
    # the instrument sees the one read made inside the C++ extension (it would miss nothing else either)
    for step in PLAIN_STEPS:
        assert any(site.startswith("nerf_app/ops/march.py") for _, site in reads[step]), reads[step]


@requires_cpp
def test_the_counter_sees_every_kind_of_host_read():
    """Each kind of read the guard must catch, alone, is counted once (and nothing else is)."""
    from nerf_app.ops.march import march_rays

    x, idx = torch.rand(8), torch.tensor([1, 2])
    cases = {
        "item": lambda: x[0].item(), "float": lambda: float(x[0]), "int": lambda: int(x[0] * 4),
        "bool": lambda: bool(x[0] > 0.5), "if": lambda: 1 if (x > 2).any() else 0, "tolist": lambda: x.tolist(),
        "numpy": lambda: x.numpy(), "np.asarray": lambda: np.asarray(x), "cpu": lambda: x.cpu(),
        "nonzero": lambda: torch.nonzero(x > 0.5), "mask": lambda: x[x > 0.5], "unique": lambda: torch.unique(x),
        "masked_select": lambda: x.masked_select(x > 0.5), "torch.tensor": lambda: torch.tensor([1.0, 2.0]),
        "from_numpy": lambda: torch.from_numpy(np.zeros(3)),
        "C++ .item() (the march)": lambda: march_rays(
            torch.rand(4, 3), torch.nn.functional.normalize(torch.rand(4, 3), dim=-1), torch.zeros(4),
            torch.ones(4), torch.full((32 ** 3 // 8,), 255, dtype=torch.uint8), 1, 32, 0.01, 0.1, 0.0, 8,
            backend="cpp"),
    }
    quiet = {"arithmetic": lambda: (x * 2 + 1).sum(), "gather": lambda: x[idx],
             "where": lambda: torch.where(x > 0.5, x, 0.0), "cummax": lambda: torch.cummax(x, 0).values,
             "randint on a generator": lambda: torch.randint(0, 5, (3,), generator=torch.Generator())}
    counter = HostReadCounter()
    with counter:
        for i, (name, fn) in enumerate(list(cases.items()) + list(quiet.items())):
            counter.step, counter.counting = i, True
            fn()
            counter.counting = False
    counts = {name: len(counter.events.get(i, [])) for i, name in enumerate(list(cases) + list(quiet))}
    assert all(counts[n] == 1 for n in cases), {n: c for n, c in counts.items() if n in cases and c != 1}
    assert all(counts[n] == 0 for n in quiet), {n: c for n, c in counts.items() if n in quiet and c}
