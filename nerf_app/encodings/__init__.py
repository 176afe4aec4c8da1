"""Input encodings (nn.Modules): the multiresolution hash grid, and more as the INR family grows."""
from .hashgrid import HashGrid

__all__ = ["HashGrid"]
