"""``python -m nerf_app VERB ...`` (what ``torchrun -m nerf_app train ...`` and ``train --nproc K`` run)."""
import sys

from .cli import main

sys.exit(main())
