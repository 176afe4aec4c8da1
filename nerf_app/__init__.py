"""nerf_app: neural radiance fields and other implicit neural representations.

Importing the package never compiles anything and never needs CUDA: the compiled extension
``nerf_app._C`` is loaded lazily the first time an op asks for it (see :mod:`nerf_app.backend`).
"""
from .errors import BackendError, ConfigError, DatasetError, NerfAppError

__version__ = "0.1.0"

__all__ = ["NerfAppError", "BackendError", "ConfigError", "DatasetError", "__version__"]
