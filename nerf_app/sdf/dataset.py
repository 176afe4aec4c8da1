"""A pool of labelled points around a mesh, refreshed a slice at a time while training.

Points live in the unit cube (see :mod:`nerf_app.geometry.mesh`). Each pool slot holds a point,
its signed distance (clamped to ``truncation``; negative inside) and inside flag. The pool is cut
into chunks of ``refresh_size``; chunk ``c`` of generation ``g`` is drawn from
``np.random.default_rng([seed, g, c])``, so the pool at any step is a pure function of (seed, step)
- which is what makes a resumed run see the same data as an uninterrupted one, without
checkpointing the pool. Each refresh labels ``refresh_size`` new points (one libigl distance +
winding-number query), so the data keeps changing at a fixed, small cost per step.
"""
from __future__ import annotations

import numpy as np
import torch

from ..geometry.queries import MeshQuery
from ..geometry.sampling import near_surface_points, uniform_points


class MeshSamplePool:
    def __init__(self, query: MeshQuery, settings, seed: int):
        self.q = query
        self.s = settings
        self.seed = int(seed)
        self.chunk = max(1, settings.refresh_size or settings.pool_size)
        self.n_chunks = max(1, settings.pool_size // self.chunk)
        n = self.n_chunks * self.chunk
        # one [n, 5] table (x, y, z, sdf, inside) so a batch is a single gather
        self.table = torch.empty(n, 5)

    def _label_chunk(self, generation: int, c: int) -> None:
        rng = np.random.default_rng([self.seed, generation, c])
        n_near = int(round(self.chunk * self.s.near_fraction))
        pts = np.concatenate([near_surface_points(self.q.V, self.q.F, n_near, self.s.near_sigmas, rng),
                              uniform_points(self.chunk - n_near, rng)])
        pts = np.clip(pts, 0.0, 1.0)
        sdf = self.q.signed_distance(pts)
        sl = slice(c * self.chunk, (c + 1) * self.chunk)
        self.table[sl, :3] = torch.from_numpy(pts.astype(np.float32))
        self.table[sl, 3] = torch.from_numpy(np.clip(sdf, -self.s.truncation, self.s.truncation).astype(np.float32))
        self.table[sl, 4] = torch.from_numpy((sdf < 0).astype(np.float32))

    def _refreshes_done(self, step: int) -> int:
        if not self.s.refresh_size or self.s.refresh_every <= 0:
            return 0
        return step // self.s.refresh_every

    def fill(self, step: int = 0, progress: bool = True) -> None:
        """Label the whole pool as it is at ``step`` (chunk c holds its latest generation)."""
        r = self._refreshes_done(step)
        it = range(self.n_chunks)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="labelling mesh samples", unit="chunk", leave=False)
        for c in it:
            # refresh k (1-based) rewrites chunk (k-1) % n_chunks with generation (k-1)//n_chunks + 1
            gen = 0 if r <= c else (r - 1 - c) // self.n_chunks + 1
            self._label_chunk(gen, c)

    def maybe_refresh(self, step: int) -> None:
        """Call after step ``step`` (0-based) finished: applies refresh number ``(step+1)/refresh_every``."""
        if not self.s.refresh_size or self.s.refresh_every <= 0 or (step + 1) % self.s.refresh_every:
            return
        k = (step + 1) // self.s.refresh_every
        self._label_chunk((k - 1) // self.n_chunks + 1, (k - 1) % self.n_chunks)

    def batch(self, n: int):
        """A random batch (global torch RNG): ``(points [n,3], sdf [n], inside [n])``."""
        b = self.table[torch.randint(0, self.table.shape[0], (n,))]
        return b[:, :3], b[:, 3], b[:, 4]
