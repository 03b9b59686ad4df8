"""The drift sketch: a fixed, seeded random projection of a model's output vector to ``SKETCH_DIM`` floats.

Every process builds the same matrix from the same seed (NumPy's PCG64 ``default_rng`` is stable across
versions), so the sketches a model service logs today compare with the reference profile built last week
(services/drift/). A Gaussian projection keeps pairwise distances within a small factor
(Johnson-Lindenstrauss), which is what the MMD test on the sketches needs; PCA would need a fitted basis
stored per model version, this needs nothing.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SKETCH_DIM = 32
SKETCH_SEED = 20_251_205  # fixed forever: changing it makes every stored reference incomparable
SKETCH_DECIMALS = 5


@lru_cache(maxsize=8)
def projection(dim: int) -> np.ndarray:
    """The ``dim x SKETCH_DIM`` projection matrix (entries N(0, 1/SKETCH_DIM)), the same in every process."""
    rng = np.random.default_rng([SKETCH_SEED, dim])
    matrix = rng.standard_normal((dim, SKETCH_DIM)) / np.sqrt(SKETCH_DIM)
    matrix.setflags(write=False)
    return matrix


def sketch_of(vector: np.ndarray) -> list[float]:
    """``SKETCH_DIM`` rounded floats summarising a 1-D output vector (class probabilities, an embedding)."""
    flat = np.asarray(vector, dtype=np.float64).reshape(-1)
    return [round(float(v), SKETCH_DECIMALS) for v in flat @ projection(flat.shape[0])]
