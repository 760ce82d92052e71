"""Two terms of MMT's and SSG's research code that change the k-reciprocal Jaccard distance.

* Row-max distance normalisation (``CLUSTERING.DIST_NORM "row_max"``): MMT's
  ``compute_jaccard_dist`` and SSG's ``re_ranking`` divide every squared distance ``d_ij = 2 - 2 <x_i,
  x_j>`` by the largest distance of its row before the softmax weights of ``V``,
  ``exp(-d_ij / max_j' d_ij')``; SpCL / OpenUnReID (and ``"none"``) use ``exp(-d_ij)``. The row
  maxima need the *farthest* sample of every row: :func:`farthest_distances`.
* The source-domain term (``CLUSTERING.SOURCE_LAMBDA``, SSG's ``selftraining.py``; also MMT's
  ``--lambda-value``): ``final = (1 - lambda) * jaccard + lambda * (v_i + v_j)`` with
  ``v_i = min_s (1 - exp(-||t_i - s||^2)) / max_i'(...)`` over the source training features s
  (:func:`source_distance_vector`). It is added to every stored entry of the sparse Jaccard matrix,
  diagonal included (the research code's dense matrix has ``2 lambda v_i`` there, which DBSCAN
  compares with eps like any entry); an absent pair, at Jaccard distance 1, is at
  ``1 - lambda + lambda (v_i + v_j) >= 1 - lambda``, so eps < 1 - lambda keeps the sparse matrix exact
  (:func:`check_source_eps`), and :func:`quantile_eps_with_source` gives MMT / SSG's eps rule on
  the full matrix, absent pairs included.

Inner products are computed in row blocks with torch on the features' device (exact, float32 with
float64 accumulation of the result only where it matters), O(N * M * D) time, O(block * M) memory.
"""
import heapq

import numpy as np
import scipy.sparse as sp

from canu_plugin.clustering.minsum import ZERO_TOL, row_ids
from canu_plugin.errors import CanuError

DIST_NORMS = ("none", "row_max")
_BLOCK = 2048  # rows per matrix product


def _extreme_similarity(queries, database, largest, block=_BLOCK):
    """(Q,) float64 largest (or smallest) inner product of every query row with the database rows.

    Args:
        queries: (Q, D), database: (M, D) float32 arrays (unit rows).
    """
    import torch
    q, db = torch.from_numpy(np.ascontiguousarray(queries)), torch.from_numpy(np.ascontiguousarray(database))
    out = np.empty(len(q), np.float64)
    for start in range(0, len(q), block):
        sims = q[start:start + block] @ db.T
        out[start:start + block] = (sims.amax(1) if largest else sims.amin(1)).double().numpy()
    return out


def farthest_distances(x):
    """Largest squared distance of every row to any row: ``max_j (2 - 2 <x_i, x_j>)``.

    Args:
        x: (N, D) float32 unit rows.
    Returns:
        (N,) float64, > 0 unless all rows are identical (then the row's weights use 1).
    """
    far = 2.0 - 2.0 * _extreme_similarity(x, x, largest=False)
    return np.where(far > 0, far, 1.0)


def source_distance_vector(target, source):
    """SSG's per-sample source term ``v`` (module docstring).

    Args:
        target: (N, D) float32 unit target features; source: (M, D) float32 unit source features.
    Returns:
        (N,) float64 in [0, 1]: the distance to the nearest source sample, ``1 - exp(-d^2)``,
        divided by its largest value over the target.
    """
    if source.ndim != 2 or source.shape[1] != target.shape[1] or len(source) == 0:
        raise CanuError(f"source features of shape {tuple(source.shape)} cannot be compared with target "
                        f"features of width {target.shape[1]}: extract both with the same model "
                        "(PSEUDO.SOURCE_DATASETS names the labelled source domain)")
    d2 = np.maximum(2.0 - 2.0 * _extreme_similarity(target, source, largest=True), 0.0)
    v = 1.0 - np.exp(-d2)
    top = v.max()
    return v / top if top > 0 else v


def check_source_eps(eps, lam):
    """The sparse matrix is exact for DBSCAN only when absent pairs (>= 1 - lambda) exceed eps."""
    if not 0.0 <= lam < 1.0:
        raise CanuError(f"CLUSTERING.SOURCE_LAMBDA={lam} must be in [0, 1) (SSG: 0.1)")
    if lam > 0 and eps >= 1.0 - lam:
        raise CanuError(f"DBSCAN eps={eps:.4f} >= 1 - CLUSTERING.SOURCE_LAMBDA ({1 - lam:.2f}): pairs with no "
                        "shared k-reciprocal neighbour would join clusters; lower CLUSTERING.EPS (or RHO) "
                        "or CLUSTERING.SOURCE_LAMBDA")


def add_source_term(dist, v, lam):
    """``(1 - lam) * dist + lam * (v_i + v_j)`` on every stored entry (diagonal included).

    Args:
        dist: (N, N) sparse Jaccard distance (absent = 1.0), diagonal stored; v: (N,); lam in [0, 1).
    Returns:
        (N, N) float32 CSR with the same structure; absent entries now mean ``1 - lam + lam (v_i + v_j)``.
    """
    d = dist.tocsr(copy=True)
    rows = row_ids(d.indptr)
    d.data = ((1.0 - lam) * d.data + lam * (v[rows] + v[d.indices])).astype(np.float32)
    return d


def _absent_pair_sums(v, stored, count):
    """The ``count`` smallest ``v_i + v_j`` (i < j) over the pairs that are not in ``stored``.

    Args:
        v: (N,); stored: set of (i, j) pairs, i < j; count: how many to return.
    Returns:
        (count,) float64, ascending (fewer if the matrix has fewer absent pairs).
    """
    order = np.argsort(v, kind="stable")
    vs = v[order]
    n, out = len(v), []
    heap = [(vs[a] + vs[a + 1], a, a + 1) for a in range(n - 1)]  # pair (a, b): sorted positions
    heapq.heapify(heap)
    while heap and len(out) < count:
        total, a, b = heapq.heappop(heap)
        i, j = sorted((int(order[a]), int(order[b])))
        if (i, j) not in stored:
            out.append(total)
        if b + 1 < n:
            heapq.heappush(heap, (vs[a] + vs[b + 1], a, b + 1))
    return np.asarray(out, np.float64)


def quantile_eps_with_source(dist, v, lam, rho):
    """MMT / SSG's eps rule on ``(1 - lam) * jaccard + lam * (v_i + v_j)``, absent pairs included.

    The mean of the smallest ``round(rho * M)`` strictly-upper-triangular values above
    ``ZERO_TOL``, M being their number in the dense matrix (see :func:`.cluster.quantile_eps`).

    Args:
        dist: (N, N) sparse matrix from :func:`add_source_term` (every pair with a shared
            k-reciprocal neighbour stored); v: (N,) source term; lam: its weight; rho in (0, 1).
    Returns:
        eps as a Python float.
    """
    d = sp.triu(dist.tocsr(), k=1).tocoo()
    n = d.shape[0]
    n_zero = int(np.count_nonzero(d.data <= ZERO_TOL))
    vals = np.sort(d.data[d.data > ZERO_TOL].astype(np.float64))
    top = int(np.round(rho * (n * (n - 1) // 2 - n_zero)))
    if top < 1:
        raise CanuError(f"rho={rho} selects no distance among the {n * (n - 1) // 2} pairs of {n} samples: "
                        "raise CLUSTERING.RHO or use EPS_RULE='fixed'")
    two_smallest = np.partition(v, 1)[:2].sum() if n > 1 else 0.0
    floor = (1.0 - lam) + lam * two_smallest  # no absent pair is below this
    if top <= len(vals) and vals[top - 1] <= floor:
        return float(vals[:top].mean())
    stored = set(zip(d.row.tolist(), d.col.tolist()))
    absent = (1.0 - lam) + lam * _absent_pair_sums(v, stored, top)
    merged = np.sort(np.concatenate([vals[:top], absent]))[:top]
    return float(merged.mean())


__all__ = ["DIST_NORMS", "farthest_distances", "source_distance_vector", "check_source_eps", "add_source_term",
           "quantile_eps_with_source"]
