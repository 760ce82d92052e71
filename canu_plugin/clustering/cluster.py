"""Pseudo-labels for training: DBSCAN on the sparse k-reciprocal Jaccard distance (CANU-ReID,
SpCL, Cluster-Contrast) or faiss k-means (MMT's original), plus cluster centroids.

``cluster(features, cfg)`` is what training calls; :func:`cluster_features` takes the same
parameters explicitly (tests, benchmarks). Conventions of the output:

* labels: (N,) int64, -1 for DBSCAN outliers, cluster ids 0..K-1 contiguous (DBSCAN numbers the
  clusters in the order of their first core point; k-means ids are compacted, empty ones dropped);
* centroids: (K, D) float32, the mean of the (L2-normalised) features of each cluster; re-normalised
  to unit length only when ``normalize_centroids`` (``CLUSTERING.NORM_CENTROIDS``) is set;
* no cluster at all (every point an outlier): all labels -1 and centroids of shape (0, D); the
  training hook decides what to do.
"""
import logging
import time

import numpy as np
import scipy.sparse as sp

from canu_plugin.clustering.distance_terms import (add_source_term, check_source_eps, quantile_eps_with_source,
                                                   source_distance_vector)
from canu_plugin.clustering.inputs import as_unit_features, check_eps, check_k
from canu_plugin.clustering.jaccard import jaccard_from_knn
from canu_plugin.clustering.knn import choice_info, knn_search, resolve_backend
from canu_plugin.clustering.minsum import DEFAULT_MAX_PAIRS, ZERO_TOL, row_ids
from canu_plugin.errors import CanuError
from canu_plugin.threads import usable_cores

logger = logging.getLogger(__name__)

METHODS = ("dbscan", "kmeans")
EPS_RULES = ("fixed", "quantile", "quantile_once")  # quantile_once: the first clustering's eps, then kept


def quantile_eps(dist, rho=1.6e-3):
    """MMT / SSG's eps: the mean of the smallest ``round(rho * M)`` strictly-upper-triangular
    non-zero Jaccard distances, M being their number in the dense matrix.

    "Zero" means <= ``ZERO_TOL``: pairs with identical V_qe rows (points sharing their k2 nearest
    neighbours, common in tight clusters) have distance 0 up to float rounding, and whether the
    research code's exact ``!= 0`` test drops them depends on that rounding (float32 summation
    order); the tolerance makes the rule well-defined (the dense reference uses it too).

    The dense matrix holds exactly 1.0 wherever the sparse one stores nothing, so M =
    N (N - 1) / 2 minus the stored zeros, and when fewer than ``round(rho * M)`` non-zero
    distances are stored, the rest of the smallest ones are 1.0 each (exact, not an estimate).

    Args:
        dist: (N, N) sparse Jaccard distance from :func:`.jaccard.jaccard_from_knn`, complete
            (``max_dist=1``) or pruned with ``keep_smallest >= round(rho * N (N - 1) / 2)``.
        rho: fraction, 0 < rho < 1 (MMT / SSG: 1.6e-3; 7e-4 on MSMT17 in some of their scripts).
    Returns:
        eps as a Python float.
    """
    if not 0.0 < rho < 1.0:
        raise CanuError(f"rho={rho} must be in (0, 1): set CLUSTERING.RHO (MMT/SSG use 1.6e-3)")
    d = dist.tocsr()
    n = d.shape[0]
    vals = d.data[d.indices > row_ids(d.indptr)]
    n_zero = int(np.count_nonzero(vals <= ZERO_TOL))
    vals = vals[vals > ZERO_TOL]
    top = int(np.round(rho * (n * (n - 1) // 2 - n_zero)))
    if top < 1:
        raise CanuError(f"rho={rho} selects no distance among the {n * (n - 1) // 2} pairs of {n} samples: "
                        "raise CLUSTERING.RHO or use EPS_RULE='fixed'")
    if top <= len(vals):
        total = np.partition(vals, top - 1)[:top].sum(dtype=np.float64)
    else:
        total = vals.sum(dtype=np.float64) + float(top - len(vals))  # the missing ones are all 1.0
    return float(total / top)


def dbscan_precomputed(dist, eps=0.6, min_samples=4):
    """scikit-learn DBSCAN on a sparse precomputed Jaccard distance.

    Only entries <= eps (and the diagonal, which sklearn needs explicit) are handed over, each
    row sorted by distance, which gives the same neighbourhoods as the dense matrix since every
    absent entry is 1.0 > eps.

    Args:
        dist: (N, N) sparse distance with its diagonal stored (as from :mod:`.jaccard`).
        eps: radius in (0, 1); min_samples: DBSCAN's core threshold (the point itself counts).
    Returns:
        (N,) int64 labels, -1 = outlier, clusters 0..K-1.
    """
    from sklearn.cluster import DBSCAN
    check_eps(eps)
    if int(min_samples) < 1:
        raise CanuError(f"min_samples={min_samples} must be >= 1 (CLUSTERING.MIN_SAMPLES, default 4)")
    eps = float(eps)  # a Python float compares like sklearn does on the float32 data
    d = dist.tocsr()
    n = d.shape[0]
    rows = row_ids(d.indptr)
    keep = (d.data <= eps) | (d.indices == rows)
    rows, cols, vals = rows[keep], d.indices[keep], d.data[keep]
    order = np.lexsort((vals, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    graph = sp.csr_matrix((vals[order], cols[order], indptr), shape=(n, n))
    labels = DBSCAN(eps=eps, min_samples=int(min_samples), metric="precomputed").fit_predict(graph)
    return labels.astype(np.int64)


def kmeans_labels(features, num_clusters=500, niter=100, seed=0, backend="auto"):
    """faiss k-means (Euclidean, on the unit features): (N,) int64 labels 0..K'-1, K' <= K.

    Clusters that end up empty are dropped and the ids compacted (in the order of faiss' ids).
    """
    import faiss
    x = np.ascontiguousarray(features, dtype=np.float32)
    n = x.shape[0]
    if not 1 <= int(num_clusters) <= n:
        raise CanuError(f"k-means with {num_clusters} clusters on {n} samples: set CLUSTERING.NUM_CLUSTERS "
                        f"between 1 and {n}")
    if int(niter) < 1:
        raise CanuError(f"k-means iterations={niter} must be >= 1 (CLUSTERING.KMEANS_ITERS)")
    gpu = resolve_backend(backend) == "faiss-gpu"
    km = faiss.Kmeans(x.shape[1], int(num_clusters), niter=int(niter), seed=int(seed), gpu=gpu,
                      verbose=False, max_points_per_centroid=max(256, -(-n // int(num_clusters))))
    km.train(x)
    assign = km.index.search(x, 1)[1].ravel()
    return np.unique(assign, return_inverse=True)[1].astype(np.int64)


def cluster_centroids(features, labels, normalize=False):
    """Mean feature of each cluster.

    Args:
        features: (N, D) float32; labels: (N,) int64 with ids 0..K-1 and -1 (ignored).
        normalize: re-normalise each centroid to unit L2 norm.
    Returns:
        (K, D) float32; (0, D) when there is no cluster.
    """
    x = np.asarray(features, np.float32)
    labels = np.asarray(labels, np.int64)
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    if k == 0:
        return np.zeros((0, x.shape[1]), np.float32)
    members = np.flatnonzero(labels >= 0)
    onehot = sp.csr_matrix((np.ones(len(members), np.float32), (labels[members], members)),
                           shape=(k, x.shape[0]))  # float32 like x: scipy would copy x to match a float64
    sums = np.asarray(onehot @ x, np.float64)
    cent = sums / np.bincount(labels[members], minlength=k)[:, None]
    if normalize:
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    return cent.astype(np.float32)


def resolve_workers(workers=0):
    """Threads for the Jaccard stage: ``workers`` if > 0, else min(4, the cores this process may run on)
    (a run pinned to one core by ``canu-bench --jobs`` gets one)."""
    return int(workers) if int(workers) > 0 else min(4, len(usable_cores()))


def _source_jaccard(x, sims, idx, k1, k2, eps, eps_rule, rho, terms, jaccard_kw):
    """Jaccard + SSG's source term (:mod:`.distance_terms`): (distance matrix, eps)."""
    v, lam = terms
    if eps_rule == "quantile":  # the rule needs every stored pair: absent ones are not all equal now
        dist = add_source_term(jaccard_from_knn(x, sims, idx, k1, k2, **jaccard_kw), v, lam)
        eps = quantile_eps_with_source(dist, v, lam, rho)
    else:  # (1 - lam) J + lam (v_i + v_j) <= eps needs J <= eps / (1 - lam)
        dist = add_source_term(jaccard_from_knn(x, sims, idx, k1, k2, max_dist=min(eps / (1 - lam), 1.0),
                                                **jaccard_kw), v, lam)
    check_source_eps(eps, lam)
    return dist, eps


def _neighbours(x, k1, knn, knn_opts):
    """The (N, >= k1) k-NN table: ``knn`` when given (checked), else searched with ``knn_opts``."""
    if knn is None:
        return knn_search(x, k1, **knn_opts)
    sims, idx = (np.asarray(a) for a in knn)
    if idx.shape != sims.shape or idx.ndim != 2 or idx.shape[0] != x.shape[0] or idx.shape[1] < k1:
        raise CanuError(f"precomputed k-NN tables of shapes {sims.shape} / {idx.shape} do not fit {x.shape[0]} "
                        f"features and k1={k1}: pass (sims, idx) of shape (N, >= k1) searched on these features")
    return sims[:, :k1].astype(np.float32, copy=False), idx[:, :k1].astype(np.int64, copy=False)


def _dbscan_path(x, k1, k2, eps, eps_rule, rho, min_samples, knn_opts, knn, max_pairs, workers, info,
                 dist_norm="none", source_terms=None):
    """k-NN (or the precomputed ``knn``) -> sparse Jaccard (-> source term) -> DBSCAN, filling
    timings and eps into ``info``.

    ``source_terms``: None or ``(v (N,), lambda)`` of :func:`.distance_terms.source_distance_vector`.
    """
    if eps_rule not in ("fixed", "quantile"):
        raise CanuError(f"unknown eps rule {eps_rule!r}: set CLUSTERING.EPS_RULE to one of {EPS_RULES}")
    check_k(x.shape[0], k1, k2)
    if eps_rule == "fixed":
        check_eps(eps)
    t0 = time.perf_counter()
    sims, idx = _neighbours(x, k1, knn, knn_opts)
    t1 = time.perf_counter()
    n = x.shape[0]
    jaccard_kw = dict(max_pairs=max_pairs, workers=workers, dist_norm=dist_norm)
    if source_terms is not None:
        dist, eps = _source_jaccard(x, sims, idx, k1, k2, eps, eps_rule, rho, source_terms, jaccard_kw)
    elif eps_rule == "quantile":  # keep just what the rule needs: the smallest rho-fraction and below
        keep = int(np.round(rho * (n * (n - 1) // 2))) + 1
        dist = jaccard_from_knn(x, sims, idx, k1, k2, keep_smallest=keep, **jaccard_kw)
        eps = quantile_eps(dist, rho)
        if eps >= 1.0:
            raise CanuError(f"CLUSTERING.RHO={rho} gives eps={eps:.4f}: almost no pair of samples shares a "
                            "k-reciprocal neighbour; lower CLUSTERING.RHO or use EPS_RULE='fixed'")
    else:  # only distances <= eps matter to DBSCAN
        dist = jaccard_from_knn(x, sims, idx, k1, k2, max_dist=eps, **jaccard_kw)
    del sims, idx
    t2 = time.perf_counter()
    labels = dbscan_precomputed(dist, eps, min_samples)
    t3 = time.perf_counter()
    info.update(eps=float(eps), knn_s=t1 - t0, jaccard_s=t2 - t1, dbscan_s=t3 - t2,
                stored_pairs=int(dist.nnz))
    return labels


def cluster_features(features, method="dbscan", k1=30, k2=6, eps=0.6, eps_rule="fixed", rho=1.6e-3,
                     min_samples=4, num_clusters=500, kmeans_iters=100, seed=0, backend="auto",
                     chunk=8192, normalize_centroids=False, max_pairs=DEFAULT_MAX_PAIRS, workers=0,
                     dist_norm="none", source_features=None, source_lambda=0.0, return_info=False,
                     precision="auto", ivf_nlist=0, ivf_nprobe=32, knn=None):
    """Cluster features into pseudo-identities (explicit-parameter form of :func:`cluster`).

    Args:
        features: (N, D) numpy array or torch tensor, any real dtype; NaN/inf raise CanuError;
            rows are L2-normalised if they are not already.
        method: "dbscan" (k-reciprocal Jaccard + DBSCAN) or "kmeans" (faiss).
        k1, k2, eps, eps_rule ("fixed" | "quantile"), rho, min_samples: DBSCAN path parameters.
        dist_norm: "none" | "row_max" distances in the Jaccard weights (:mod:`.distance_terms`).
        source_features, source_lambda: (M, D) source-domain features and the weight of SSG's
            source term (:mod:`.distance_terms`); ignored when either is missing / 0.
        num_clusters, kmeans_iters, seed: k-means parameters.
        backend, chunk: k-NN backend (``knn.BACKENDS``) and query chunk.
        normalize_centroids: unit-normalise the centroids.
        max_pairs, workers: pairs materialised at once per worker, threads (0 = min(4, cores))
            of the Jaccard stage.
        return_info: also return a dict (eps used, stage timings, counts).
        precision: the torch backend's first pass ("auto" | "fp32" | "fp16" | "bf16"; same neighbours).
        ivf_nlist, ivf_nprobe: the faiss-ivf backend's lists (0 = 4 sqrt(N)) and probes.
        knn: precomputed (sims, idx) of shape (N, >= k1), e.g. from
            :func:`.distributed.sharded_knn`; the DBSCAN path then skips its own k-NN.
    Returns:
        (labels (N,) int64, centroids (K, D) float32[, info dict]); see the module docstring.
    """
    x = as_unit_features(features)
    info = {"method": method, "backend": "precomputed" if knn is not None else resolve_backend(backend, log=False)}
    if knn is None and method == "dbscan":  # the k-NN that runs ("auto": measured), torch's first pass too
        info.update(choice_info(backend, precision, x, min(int(k1), len(x))))
    knn_opts = dict(backend=backend, chunk=chunk, precision=precision, nlist=ivf_nlist, nprobe=ivf_nprobe)
    t0 = time.perf_counter()
    if method == "dbscan":
        terms = None
        if source_features is not None and source_lambda > 0:
            terms = (source_distance_vector(x, as_unit_features(source_features, "source features")),
                     float(source_lambda))
        labels = _dbscan_path(x, k1, k2, eps, eps_rule, rho, min_samples, knn_opts, knn, max_pairs,
                              resolve_workers(workers), info, dist_norm, terms)
    elif method == "kmeans":
        labels = kmeans_labels(x, num_clusters, kmeans_iters, seed, backend)
    else:
        raise CanuError(f"unknown clustering method {method!r}: set CLUSTERING.METHOD to one of {METHODS}")
    centroids = cluster_centroids(x, labels, normalize_centroids)
    info.update(num_clusters=len(centroids), num_outliers=int((labels < 0).sum()),
                total_s=time.perf_counter() - t0)
    logger.info("clustering: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in info.items()))
    return (labels, centroids, info) if return_info else (labels, centroids)


def cluster(features, cfg, return_info=False, kept_eps=None, source_features=None, knn=None):
    """Training entry point: :func:`cluster_features` with the ``cfg.CLUSTERING`` keys.

    Args:
        features: (N, D) L2-normalised features (numpy or torch, CPU or CUDA).
        cfg: fast-reid config with ``add_canu_config`` applied.
        return_info: also return the info dict (eps used, timings, counts).
        kept_eps: with ``EPS_RULE "quantile_once"``, the eps of the run's first clustering (None:
            this is the first one, eps comes from the rho-quantile); ignored by the other rules.
        source_features: (M, D) source-domain features for ``CLUSTERING.SOURCE_LAMBDA`` > 0.
        knn: precomputed (N, >= K1) (sims, idx), e.g. the sharded k-NN (None: search here).
    Returns:
        labels (N,) int64 (-1 = outlier, 0..K-1), centroids (K, D) float32 (means; unit-normalised
        when CLUSTERING.NORM_CENTROIDS); K may be 0 (all outliers): centroids then have shape (0, D).
    """
    c = cfg.CLUSTERING
    rule, eps = c.EPS_RULE, c.EPS
    if rule == "quantile_once":
        rule, eps = ("quantile", eps) if kept_eps is None else ("fixed", float(kept_eps))
    if c.SOURCE_LAMBDA > 0 and source_features is None:
        raise CanuError("CLUSTERING.SOURCE_LAMBDA > 0 needs the source domain's features: set "
                        "PSEUDO.SOURCE_DATASETS to the labelled source dataset(s), or SOURCE_LAMBDA 0")
    return cluster_features(
        features, method=c.METHOD, k1=c.K1, k2=c.K2, eps=eps, eps_rule=rule, rho=c.RHO,
        min_samples=c.MIN_SAMPLES, num_clusters=c.NUM_CLUSTERS, kmeans_iters=c.KMEANS_ITERS,
        seed=c.SEED, backend=c.KNN_BACKEND, chunk=c.KNN_CHUNK, normalize_centroids=c.NORM_CENTROIDS,
        max_pairs=c.MAX_PAIRS, workers=c.WORKERS, dist_norm=c.DIST_NORM, source_features=source_features,
        source_lambda=c.SOURCE_LAMBDA, return_info=return_info, precision=c.KNN_PRECISION,
        ivf_nlist=c.KNN_IVF_NLIST, ivf_nprobe=c.KNN_IVF_NPROBE, knn=knn)


__all__ = ["METHODS", "EPS_RULES", "resolve_workers", "quantile_eps", "dbscan_precomputed", "kmeans_labels",
           "cluster_centroids", "cluster_features", "cluster"]
