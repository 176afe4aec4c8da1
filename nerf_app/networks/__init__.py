"""Coordinate networks: the (fully fused) MLP, and more as the INR family grows."""
from .mlp import FusedMLP

__all__ = ["FusedMLP"]
