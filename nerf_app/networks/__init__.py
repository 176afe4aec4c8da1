"""Coordinate networks: the (fully fused) MLP, and more as the INR family grows."""
from .mlp import FusedMLP
from .siren import Siren

__all__ = ["FusedMLP", "Siren"]
