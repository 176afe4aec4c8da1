"""Opening a trained NeRF run for inference (eval, render, export, the viewer): what build() skips."""
import torch

from nerf_app.nerf.occupancy import OccupancyGrid


def test_a_loaded_run_takes_its_visible_cells_from_the_checkpoint_and_builds_no_optimiser(nerf_run, monkeypatch):
    from nerf_app.train.modes import get_task_class, open_run
    run, _ = nerf_run
    saved = torch.load(run / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)["model"]

    # what training marked is what a fresh build marks from the same cameras: skipping it loses nothing
    # (and the mask is not trivially all-visible, or this would prove nothing)
    fresh = get_task_class("nerf")(open_run(run, lock=False)[0].config)
    fresh.build()
    assert torch.equal(fresh.model.grid.visible, saved["grid.visible"])
    assert not bool(saved["grid.visible"].all()) and bool(saved["grid.visible"].any())
    assert fresh.optimizer is not None

    def refuse(*_, **__):
        raise AssertionError("mark_visible ran while opening a trained run")
    monkeypatch.setattr(OccupancyGrid, "mark_visible", refuse)
    task, _, _ = open_run(run, lock=False)
    assert torch.equal(task.model.grid.visible, saved["grid.visible"])
    assert task.optimizer is None
    assert task._loading_checkpoint is False   # a later build (none today) would mark again
