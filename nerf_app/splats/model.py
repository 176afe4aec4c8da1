"""A set of 3D Gaussian splats, the parameters 3D Gaussian Splatting optimises and its PLY stores."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..geometry.rotations import matrix_to_quat

SH_C0 = 0.28209479177387814   # Y_0^0: colour = SH_C0 * f_dc + 0.5 (3DGS)


@dataclass
class Splats:
    """``means [N,3]``, ``log_scales [N,3]`` (std-devs along the rotated axes), ``quats [N,4]`` (w first, not
    necessarily normalised), ``opacity_logits [N]``, ``sh [N, K, 3]`` (K = degree**2 coefficients per colour
    channel, the project's degree: 3DGS degree + 1). Coordinates: whatever frame the owner says (the bake and
    the refinement work in the scene's normalised frame; the PLY file holds the capture's)."""
    means: torch.Tensor
    log_scales: torch.Tensor
    quats: torch.Tensor
    opacity_logits: torch.Tensor
    sh: torch.Tensor

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def degree(self) -> int:
        return int(round(math.sqrt(self.sh.shape[1])))

    def tensors(self):
        return [self.means, self.log_scales, self.quats, self.opacity_logits, self.sh]

    def detached(self) -> "Splats":
        return Splats(*[t.detach().clone() for t in self.tensors()])

    def select(self, index) -> "Splats":
        return Splats(*[t[index] for t in self.tensors()])

    def transformed(self, scale: float, translation) -> "Splats":
        """``x -> scale * x + translation`` (uniform scale, no rotation: orientations and SH stay as they are)."""
        t = torch.as_tensor(np.asarray(translation, np.float64), dtype=self.means.dtype, device=self.means.device)
        return Splats(self.means * scale + t, self.log_scales + math.log(scale), self.quats, self.opacity_logits,
                      self.sh)

    @staticmethod
    def cat(parts) -> "Splats":
        return Splats(*[torch.cat(ts, 0) for ts in zip(*[p.tensors() for p in parts])])

    def nbytes_ply(self) -> int:
        return len(self) * 4 * (3 + 3 + 3 * self.sh.shape[1] + 1 + 3 + 4)


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]`` rotation matrices -> ``[N, 4]`` unit quaternions (w first, w >= 0)."""
    return matrix_to_quat(R)
