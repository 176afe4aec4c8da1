"""``python -m nerf_app VERB ...`` (what ``torchrun -m nerf_app train ...`` and ``train --nproc K`` run)."""
import sys

from .cli import main

code = main()
if "nerf_app.train.distributed" in sys.modules:   # a torch.distributed rank: leave past the interpreter's teardown
    from .train.distributed import exit_rank
    exit_rank(code)
sys.exit(code)
