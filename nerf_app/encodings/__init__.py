"""Input encodings (nn.Modules) and the factory that builds one by name for any field."""
from .hashgrid import HashGrid
from .frequency import FourierFeatures, IdentityEncoding, PositionalEncoding
from .factory import ENCODINGS, EncodingSettings, build, prepare

__all__ = ["HashGrid", "PositionalEncoding", "FourierFeatures", "IdentityEncoding", "ENCODINGS",
           "EncodingSettings", "build", "prepare"]
