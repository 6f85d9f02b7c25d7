"""Maximum-weight bipartite matching (Hungarian algorithm), as used by the DAVIS unsupervised protocol."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["max_weight_assignment"]


def _min_cost_rows_to_cols(cost: np.ndarray) -> list[int]:
    """Column of each row minimising total cost, for n_rows <= n_cols (shortest augmenting paths with potentials)."""
    n, m = cost.shape
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    owner, way = [0] * (m + 1), [0] * (m + 1)  # owner[j]: 1-based row matched to column j (0 = free)
    for row in range(1, n + 1):
        owner[0], col0 = row, 0
        min_slack, used = [math.inf] * (m + 1), [False] * (m + 1)
        while True:
            used[col0] = True
            r0, delta, col1 = owner[col0], math.inf, 0
            for j in range(1, m + 1):
                if used[j]:
                    continue
                slack = cost[r0 - 1, j - 1] - u[r0] - v[j]
                if slack < min_slack[j]:
                    min_slack[j], way[j] = slack, col0
                if min_slack[j] < delta:
                    delta, col1 = min_slack[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    min_slack[j] -= delta
            col0 = col1
            if owner[col0] == 0:
                break
        while col0:
            prev = way[col0]
            owner[col0] = owner[prev]
            col0 = prev
    cols = [0] * n
    for j in range(1, m + 1):
        if owner[j]:
            cols[owner[j] - 1] = j - 1
    return cols


def max_weight_assignment(score) -> list[tuple[int, int]]:
    """Pairs (row, col), one per row or column (whichever is fewer), maximising the summed ``score``."""
    s = np.asarray(score, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"score must be a 2-D matrix, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("score contains NaN or infinite values")
    if s.size == 0:
        return []
    if s.shape[0] <= s.shape[1]:
        return [(r, c) for r, c in enumerate(_min_cost_rows_to_cols(-s))]
    return sorted((r, c) for c, r in enumerate(_min_cost_rows_to_cols(-s.T)))
