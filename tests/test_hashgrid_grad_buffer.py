"""The hash table's gradient written straight into ``table.grad`` on the CPU (ops/hashgrid.py:
_table_gradient): the same gradients as the plain path, a buffer reused across steps only while nothing else
holds it, and no side effect where autograd would not have accumulated (autograd.grad, hooks)."""
import pytest
import torch

from nerf_app import backend
from nerf_app.encodings.hashgrid import HashGrid

pytestmark = pytest.mark.skipif(backend.extension() is None or
                                not hasattr(backend.extension(), "hashgrid_backward_table_into"),
                                reason="needs the compiled extension (hashgrid_backward_table_into)")


def _grid_and_points(seed=0, n=517):
    torch.manual_seed(seed)
    enc = HashGrid(3, n_levels=6, n_features_per_level=2, log2_hashmap_size=10, base_resolution=4,
                   finest_resolution=64)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    g = torch.Generator().manual_seed(seed + 1)
    return enc, torch.rand(n, 3, generator=g), torch.randn(n, enc.n_output_dims, generator=g)


def _plain(enc, x, w):
    """The gradient AccumulateGrad would get from the plain kernel."""
    ext = backend.extension()
    return ext.hashgrid_backward_table(x, enc.table.detach(), w.contiguous(), *enc.layout.kernel_args(), False)


def test_steps_reuse_one_buffer_and_match_the_plain_gradient():
    enc, x, w = _grid_and_points()
    ptrs = []
    for step in range(3):
        enc.table.grad = None
        (enc(x) * (w * (step + 1))).sum().backward()
        assert torch.equal(enc.table.grad, _plain(enc, x, w * (step + 1)))
        ptrs.append(enc.table.grad.data_ptr())
    assert ptrs[0] == ptrs[1] == ptrs[2]   # no new table-sized allocation per step


def test_a_kept_gradient_is_never_overwritten():
    enc, x, w = _grid_and_points()
    (enc(x) * w).sum().backward()
    kept = enc.table.grad                 # a caller keeps last step's gradient ...
    expected = kept.clone()
    view = kept.view(-1)[:5]
    enc.table.grad = None
    (enc(x) * 3 * w).sum().backward()     # ... so this step must not write into it
    assert torch.equal(kept, expected) and torch.equal(view, expected.view(-1)[:5])
    assert enc.table.grad.data_ptr() != kept.data_ptr()
    assert torch.equal(enc.table.grad, _plain(enc, x, 3 * w))


def test_a_second_pass_accumulates():
    enc, x, w = _grid_and_points()
    x2 = torch.rand(99, 3, generator=torch.Generator().manual_seed(7))
    w2 = torch.randn(99, enc.n_output_dims, generator=torch.Generator().manual_seed(8))
    ((enc(x) * w).sum() + (enc(x2) * w2).sum()).backward()
    torch.testing.assert_close(enc.table.grad, _plain(enc, x, w) + _plain(enc, x2, w2), rtol=1e-6, atol=1e-6)
    # gradients already there (zero_grad(set_to_none=False)) are added to, as AccumulateGrad does
    before = enc.table.grad.clone()
    (enc(x) * w).sum().backward()
    torch.testing.assert_close(enc.table.grad, before + _plain(enc, x, w), rtol=1e-6, atol=1e-6)


def test_no_side_effect_where_autograd_would_not_accumulate():
    enc, x, w = _grid_and_points()
    x.requires_grad_(True)
    (gx,) = torch.autograd.grad((enc(x) * w).sum(), [x])    # the table's AccumulateGrad does not run
    assert enc.table.grad is None and gx.abs().sum() > 0
    seen = []
    enc.table.register_hook(lambda g: seen.append(g.clone()))
    (enc(x) * w).sum().backward()                            # a hook sees the gradient, as before
    assert len(seen) == 1 and torch.equal(seen[0], _plain(enc, x.detach(), w))
    assert torch.equal(enc.table.grad, seen[0])
