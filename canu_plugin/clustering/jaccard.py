"""Sparse, exact k-reciprocal Jaccard distance (Zhong et al., CVPR 2017 re-ranking), as used for
pseudo-labels by SpCL / Cluster-Contrast / OpenUnReID ("faiss" variant), without any N x N array.

Semantics (those of the faiss-based research code, reproduced by :mod:`.reference`):

* ``idx`` = the k1 nearest neighbours of each point by inner product, itself included (so the
  forward list ``N(i, k1)`` has k1 entries, not k1 + 1 as in the original re-ranking code).
* ``R(i)`` = k-reciprocal set: ``j in N(i, k1)`` and ``i in N(j, k1)``; ``H(i)`` the same with the
  first ``round(k1 / 2) + 1`` neighbours (numpy's round-half-even).
* Expansion: ``E(i) = R(i)`` united with every ``H(c)``, ``c in R(i)``, for which
  ``|H(c) & R(i)| > 2/3 * |H(c)|``.
* ``V[i, j] = exp(-d_ij) / sum_{j' in E(i)} exp(-d_ij')`` for ``j in E(i)``, with the original
  distance ``d_ij = 2 - 2 <x_i, x_j>`` (also for ``j`` outside ``N(i, k1)``), 0 elsewhere.
* Query expansion (k2 > 1): ``V_qe[i] = mean of V[j]`` over the first k2 entries of ``idx[i]``.
* ``jaccard[i, j] = 1 - s / (2 - s)`` with ``s = sum_l min(V_qe[i, l], V_qe[j, l])``, clipped at 0.

Every pair that shares no column of ``V_qe`` has ``s = 0`` and distance exactly 1.0: those are the
entries *not stored* in the returned CSR matrix. Stored are the pairs sharing a column (distance
< 1; optionally only those <= ``max_dist``, all DBSCAN can use) and the whole diagonal (so a row
with an empty ``V_qe`` keeps its 1.0 self-distance, as in the dense matrix).

Cost: the k-NN is the only O(N^2 D) step. The sets, V and V_qe are sparse matrix products over
O(N k1) entries; V's inner products come from the k-NN table, or from the features for the few
pairs outside it; the Jaccard stage (:mod:`.minsum`) enumerates sum_l |column l of V_qe|^2 / 2
pairs, i.e. O(N k1^2) for bounded neighbourhoods, in blocks of at most ``max_pairs``.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from canu_plugin.clustering.inputs import as_unit_features, check_k
from canu_plugin.clustering.knn import knn_search
from canu_plugin.clustering.minsum import DEFAULT_MAX_PAIRS, jaccard_from_vectors, row_ids
from canu_plugin.errors import CanuError

_DOT_BATCH = 4096            # pairs per batch when computing missing inner products


def half_width(k1):
    """Number of forward neighbours used for the half-size sets ``H``: ``round(k1/2) + 1``, <= k1."""
    return min(int(np.around(k1 / 2)) + 1, int(k1))


def _forward_matrix(idx, width, data=None):
    """(N, N) CSR with row i holding columns idx[i, :width] (data: ones, or ``data[:, :width]``)."""
    n = idx.shape[0]
    vals = np.ones(n * width, np.int32) if data is None else np.ascontiguousarray(data[:, :width]).ravel()
    return sp.csr_matrix((vals, idx[:, :width].ravel(), np.arange(0, n * width + 1, width)), shape=(n, n))


def reciprocal_neighbours(idx, width):
    """k-reciprocal sets from the first ``width`` columns of a k-NN table.

    Args:
        idx: (N, k) int64 neighbour ids, k >= width.
        width: forward list length.
    Returns:
        (N, N) symmetric binary int32 CSR (sorted indices): [i, j] = 1 iff j is among the first
        ``width`` neighbours of i and i among the first ``width`` of j.
    """
    fwd = _forward_matrix(idx, width)
    return fwd.multiply(fwd.T.tocsr()).tocsr()


def expanded_neighbours(idx, k1):
    """The expanded k-reciprocal sets ``E(i)`` (module docstring).

    Args:
        idx: (N, >= k1) int64 k-NN table (self included).
        k1: forward list length.
    Returns:
        (N, N) binary int32 CSR with sorted indices; row i = E(i).
    """
    r = reciprocal_neighbours(idx, k1)
    h = reciprocal_neighbours(idx, half_width(k1))
    hsize = np.diff(h.indptr)
    # overlap[i, c] = |H(c) & R(i)| for c in R(i)  (H is symmetric, so R @ H = R @ H^T)
    overlap = (r @ h).multiply(r).tocoo()
    ok = overlap.data > (2 / 3) * hsize[overlap.col]
    accepted = sp.csr_matrix((np.ones(int(ok.sum()), np.int32), (overlap.row[ok], overlap.col[ok])),
                             shape=r.shape)
    e = (r + accepted @ h).tocsr()
    e.data[:] = 1
    e.sort_indices()
    return e


def _pair_dots(x, rows, cols, workers=1):
    """(P,) float64 inner products <x[rows[p]], x[cols[p]]>, in batches (threads: numpy releases the GIL)."""
    out = np.empty(len(rows), np.float64)

    def batch(a):
        b = min(a + _DOT_BATCH, len(rows))
        out[a:b] = np.einsum("ij,ij->i", x[rows[a:b]], x[cols[a:b]])

    with ThreadPoolExecutor(max(int(workers), 1)) as pool:
        list(pool.map(batch, range(0, len(rows), _DOT_BATCH)))
    return out


def encoding_vectors(x, sims, idx, e, workers=1, row_scale=None):
    """The k-reciprocal feature vectors V (rows sum to 1).

    Args:
        x: (N, D) float32 unit rows.
        sims: (N, k) float32 inner products of the k-NN table ``idx`` (reused where possible).
        idx: (N, k) int64 k-NN table.
        e: (N, N) binary CSR of the expanded sets (:func:`expanded_neighbours`).
        workers: threads for the inner products missing from the k-NN table.
        row_scale: optional (N,) divisor of row i's distances in the weights, ``exp(-d_ij /
            row_scale[i])`` (MMT / SSG: the row's largest distance, see :mod:`.distance_terms`).
    Returns:
        (N, N) float64 CSR with the structure of ``e``.
    """
    rows = row_ids(e.indptr)
    cols = e.indices
    shifted = _forward_matrix(idx, idx.shape[1], sims.astype(np.float64) + 3.0)  # 3 + s > 0: absent = 0
    s = np.asarray(shifted[rows, cols]).ravel() - 3.0
    missing = np.flatnonzero(s < -2.5)  # pairs outside the k-NN table: inner product from features
    s[missing] = _pair_dots(x, rows[missing], cols[missing], workers)
    d = 2.0 - 2.0 * s  # the original distance
    w = np.exp(-d if row_scale is None else -d / np.asarray(row_scale, np.float64)[rows])
    w /= np.bincount(rows, weights=w, minlength=x.shape[0])[rows]
    return sp.csr_matrix((w, cols, e.indptr), shape=e.shape)


def query_expansion(v, idx, k2):
    """Local query expansion: row i becomes the mean of the rows of its first k2 neighbours.

    Args:
        v: (N, N) CSR.
        idx: (N, >= k2) int64 k-NN table.
        k2: expansion size; 1 returns ``v`` unchanged (as the research code does).
    Returns:
        (N, N) float64 CSR.
    """
    if k2 == 1:
        return v
    q = _forward_matrix(idx, k2, np.full(idx.shape, 1.0 / k2))
    out = (q @ v).tocsr()
    out.sort_indices()
    return out


def jaccard_from_knn(features, sims, idx, k1=30, k2=6, max_dist=1.0, keep_smallest=0,
                     max_pairs=DEFAULT_MAX_PAIRS, workers=1, dist_norm="none"):
    """Sparse Jaccard distance from a precomputed k-NN table (the stages after the k-NN).

    Args:
        features: (N, D) float32 unit rows (the ones the table was computed on).
        sims: (N, >= k1) float32 inner products, descending; idx: (N, >= k1) int64 ids.
        k1, k2: re-ranking parameters (k2 <= k1 <= N).
        max_dist, keep_smallest, max_pairs, workers: what to store, the memory bound and the
            threads, see :func:`.minsum.jaccard_from_vectors` (defaults: the complete matrix).
        dist_norm: "none" (weights exp(-d), SpCL / OpenUnReID) or "row_max" (exp(-d / row max),
            MMT / SSG's code; one more O(N^2 D) pass for the farthest samples).
    Returns:
        (N, N) float32 CSR; absent entries mean 1.0 (or above ``max_dist``), see module docstring.
    """
    from canu_plugin.clustering.distance_terms import DIST_NORMS, farthest_distances
    check_k(features.shape[0], k1, k2)
    if idx.shape[1] < k1:
        raise ValueError(f"k-NN table has {idx.shape[1]} columns, k1={k1} needed")
    if dist_norm not in DIST_NORMS:
        raise CanuError(f"unknown distance normalisation {dist_norm!r}: set CLUSTERING.DIST_NORM to one of {DIST_NORMS}")
    scale = farthest_distances(features) if dist_norm == "row_max" else None
    e = expanded_neighbours(idx, k1)
    v = encoding_vectors(features, sims[:, :k1], idx[:, :k1], e, workers, row_scale=scale)
    del e
    vqe = query_expansion(v, idx, k2)
    del v
    return jaccard_from_vectors(vqe, max_dist, keep_smallest, max_pairs, workers)


def jaccard_distance(features, k1=30, k2=6, backend="auto", chunk=8192, max_pairs=DEFAULT_MAX_PAIRS, workers=1,
                     precision="auto"):
    """k-reciprocal Jaccard distance of a feature set, as a sparse matrix.

    Args:
        features: (N, D) array or tensor (see ``inputs.as_unit_features``; rows are L2-normalised).
        k1, k2: re-ranking parameters (Cluster-Contrast / SpCL: 30, 6).
        backend, chunk, precision: k-NN backend, query chunk and torch first pass
            (:func:`.knn.knn_search`; "auto": measured on this machine).
        max_pairs, workers: memory bound and threads, see :func:`.minsum.jaccard_from_vectors`.
    Returns:
        (N, N) float32 CSR with every distance < 1 and the diagonal; absent entries mean 1.0.
    """
    x = as_unit_features(features)
    check_k(x.shape[0], k1, k2)
    sims, idx = knn_search(x, k1, backend=backend, chunk=chunk, precision=precision)
    return jaccard_from_knn(x, sims, idx, k1, k2, max_pairs=max_pairs, workers=workers)


__all__ = ["half_width", "reciprocal_neighbours", "expanded_neighbours", "encoding_vectors",
           "query_expansion", "jaccard_from_knn", "jaccard_distance"]
