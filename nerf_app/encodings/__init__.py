"""Input encodings (nn.Modules): the multiresolution hash grid, and more as the INR family grows."""
from .hashgrid import HashGrid
from .frequency import FourierFeatures, IdentityEncoding, PositionalEncoding

__all__ = ["HashGrid", "PositionalEncoding", "FourierFeatures", "IdentityEncoding"]
