"""Dense reference of the k-reciprocal Jaccard distance + DBSCAN, for tests and benchmarks only.

Written from the algorithm with the structure and semantics of the faiss-based research code
(SpCL / Cluster-Contrast / OpenUnReID ``compute_jaccard_distance``): exact faiss k-NN of k1
neighbours (self included), per-row Python loops, float32 N x N matrices ``V``, ``V_qe`` and the
Jaccard distance, an inverted index built from the columns of ``V_qe``, and scikit-learn's DBSCAN on
the dense matrix; MMT/SSG's eps rule on the dense upper triangle. It needs ~3 * 4 * N^2 bytes
(12 GiB at N = 32,621): never use it in training. The sparse path (:mod:`.jaccard`) must agree
with it to float rounding (values) and exactly (labels).
"""
import numpy as np

from canu_plugin.clustering.inputs import as_unit_features, check_eps, check_k
from canu_plugin.clustering.jaccard import half_width
from canu_plugin.clustering.minsum import ZERO_TOL


def knn_reference(x, k):
    """Exact k-NN of all rows in one faiss search: (N, k) int64 ids (IndexFlatIP)."""
    import faiss
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index.search(x, k)[1]


def _reciprocal(rank, i, width):
    """Ids j among the first ``width`` neighbours of i that have i among their first ``width``."""
    fwd = rank[i, :width]
    back = rank[fwd, :width]
    return fwd[(back == i).any(axis=1)]


def _encoding_matrix(x, rank, k1, row_max=False):
    """(N, N) float32 dense V: softmax(-d) over each point's expanded k-reciprocal set (with
    ``row_max``: softmax(-d / max_j d_ij), MMT / SSG's code)."""
    n = x.shape[0]
    hw = half_width(k1)
    full = [_reciprocal(rank, i, k1) for i in range(n)]
    half = [_reciprocal(rank, i, hw) for i in range(n)]
    v = np.zeros((n, n), np.float32)
    for i in range(n):
        parts = [full[i]]
        for c in full[i]:
            cand = half[c]
            if len(np.intersect1d(cand, full[i])) > 2 / 3 * len(cand):
                parts.append(cand)
        expanded = np.unique(np.concatenate(parts))
        if len(expanded) == 0:
            continue
        neg_d = -(2.0 - 2.0 * (x[expanded] @ x[i]))  # -original distance, float32
        if row_max:
            far = float((2.0 - 2.0 * (x @ x[i])).max())
            neg_d = neg_d / (far if far > 0 else 1.0)
        w = np.exp(neg_d - neg_d.max())
        v[i, expanded] = w / w.sum()
    return v


def _min_sums_to_distance(v):
    """Dense Jaccard distance 1 - s / (2 - s) via the inverted index of v's columns."""
    n = v.shape[0]
    inv = [np.flatnonzero(v[:, col] != 0) for col in range(n)]
    dist = np.zeros((n, n), np.float32)
    for i in range(n):
        acc = np.zeros(n, np.float32)
        for col in np.flatnonzero(v[i] != 0):
            rows = inv[col]
            acc[rows] = acc[rows] + np.minimum(v[i, col], v[rows, col])
        dist[i] = 1.0 - acc / (2.0 - acc)
    dist[dist < 0] = 0.0
    return dist


def jaccard_reference(features, k1=30, k2=6, rank=None, dist_norm="none"):
    """Dense k-reciprocal Jaccard distance.

    Args:
        features: (N, D) array or tensor (L2-normalised like the sparse path).
        k1, k2: re-ranking parameters.
        rank: optional (N, >= k1) int64 k-NN table; computed with faiss when None.
        dist_norm: "none" or "row_max" (see :mod:`.distance_terms`).
    Returns:
        (N, N) float32 dense distance matrix.
    """
    x = as_unit_features(features)
    check_k(x.shape[0], k1, k2)
    if rank is None:
        rank = knn_reference(x, k1)
    v = _encoding_matrix(x, rank, k1, row_max=dist_norm == "row_max")
    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(x.shape[0]):
            v_qe[i] = v[rank[i, :k2]].mean(axis=0)
        v = v_qe
        del v_qe
    return _min_sums_to_distance(v)


def quantile_eps_reference(dist, rho=1.6e-3):
    """MMT / SSG eps: mean of the smallest ``round(rho * M)`` non-zero strict-upper-triangle
    distances, M = their count. Returns a Python float.

    One deviation from the research code, shared with the sparse path: "non-zero" means above
    ``ZERO_TOL`` (1e-6) rather than ``!= 0``, which would depend on float rounding.
    """
    tri = np.triu(dist, 1)
    tri = np.sort(tri[tri > ZERO_TOL], axis=None)
    top = int(np.round(rho * tri.size))
    return float(tri[:top].mean())


def dbscan_reference(dist, eps=0.6, min_samples=4):
    """scikit-learn DBSCAN on the dense precomputed matrix: (N,) int64 labels, -1 = outlier."""
    from sklearn.cluster import DBSCAN
    check_eps(eps)
    labels = DBSCAN(eps=float(eps), min_samples=int(min_samples), metric="precomputed").fit_predict(dist)
    return labels.astype(np.int64)


def source_term_reference(dist, target, source, lam):
    """SSG's dense ``(1 - lam) * dist + lam * (v_i + v_j)``, ``v`` from the target's squared
    distances to the nearest source sample (``1 - exp(-d^2)``, divided by its maximum)."""
    t, s = as_unit_features(target).astype(np.float64), as_unit_features(source).astype(np.float64)
    d2 = np.maximum((t ** 2).sum(1)[:, None] + (s ** 2).sum(1)[None, :] - 2.0 * t @ s.T, 0.0)
    v = (1.0 - np.exp(-d2)).min(1)
    v = v / v.max()
    return ((1.0 - lam) * dist + lam * (v[:, None] + v[None, :])).astype(np.float32)


def cluster_reference(features, k1=30, k2=6, eps=0.6, min_samples=4, eps_rule="fixed", rho=1.6e-3,
                      dist_norm="none", source=None, source_lambda=0.0):
    """Dense pipeline end to end: (labels (N,) int64, eps used)."""
    dist = jaccard_reference(features, k1, k2, dist_norm=dist_norm)
    if source is not None and source_lambda > 0:
        dist = source_term_reference(dist, features, source, source_lambda)
    if eps_rule == "quantile":
        eps = quantile_eps_reference(dist, rho)
    return dbscan_reference(dist, eps, min_samples), float(eps)


__all__ = ["knn_reference", "jaccard_reference", "quantile_eps_reference", "dbscan_reference",
           "source_term_reference", "cluster_reference"]
