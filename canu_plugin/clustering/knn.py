"""k nearest neighbours by inner product (cosine on L2-normalised features).

Backends (``CLUSTERING.KNN_BACKEND``):

* ``faiss-gpu``: faiss' exact ``GpuIndexFlatIP`` (needs a faiss build with GPU support);
* ``torch``: exact blocked matrix products on torch's device, CUDA when torch sees it
  (:mod:`.knn_torch`; optionally a half-precision first pass, same result);
* ``faiss-cpu``: faiss' exact ``IndexFlatIP`` on the CPU;
* ``faiss-ivf``: approximate, faiss ``IndexIVFFlat`` on the CPU, for very large N (recall < 1);
* ``auto``: the exact backend (and, with precision "auto", the torch first pass) measured fastest
  on this machine by a short calibration on a sample of the features (:mod:`.knn_calibrate`), for
  searches large enough to matter; the default it must beat by 10 %, and the choice for small
  searches, is faiss-gpu when faiss has GPU support and torch sees CUDA, else torch when torch
  sees CUDA, else faiss-cpu (torch on the CPU when faiss is not installed). The choice is logged.

Queries are searched in chunks, so the memory beyond the index is ``chunk * k`` results (and one
(chunk, N) block of scores for torch).
"""
import logging
import time

import numpy as np

from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "faiss-gpu", "torch", "faiss-cpu", "faiss-ivf")
PRECISIONS = ("fp32", "fp16", "bf16")  # the torch backend's first pass
PRECISION_CHOICES = ("auto",) + PRECISIONS  # "auto": measured with the backend (fp32 where not measured)
_LOGGED = set()


def _faiss(required=True):
    try:
        import faiss
    except ImportError as e:
        if not required:
            return None
        raise CanuError("faiss is not installed: pip install faiss-cpu (or faiss-gpu-cu12 for GPUs), "
                        "or `pip install -e .[cpu]`, or set CLUSTERING.KNN_BACKEND 'torch'") from e
    return faiss


def _faiss_gpus(faiss):
    return faiss.get_num_gpus() if faiss is not None and hasattr(faiss, "get_num_gpus") else 0


def _torch_has_cuda():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return torch.cuda.is_available()


def _auto(faiss, n_gpus, cuda):
    """(backend, reason) picked by "auto"."""
    if n_gpus > 0 and cuda:
        return "faiss-gpu", "faiss has GPU support and torch sees CUDA"
    if cuda:
        why = "faiss is not installed" if faiss is None else "the installed faiss has no GPU support"
        return "torch", f"torch sees CUDA, {why}: exact k-NN on torch's CUDA device"
    if faiss is None:
        return "torch", "no CUDA and faiss is not installed: exact k-NN on torch's CPU (pip install faiss-cpu)"
    return "faiss-cpu", "torch sees no CUDA device"


def resolve_backend(backend="auto", log=True):
    """Pick the k-NN backend.

    Args:
        backend: one of ``BACKENDS``.
    Returns:
        "faiss-gpu", "torch", "faiss-cpu" or "faiss-ivf": "auto"'s static choice, logged with why
        (once) unless ``log`` is False (:func:`resolve_knn` may measure instead).
    Raises:
        CanuError: unknown name, or "faiss-gpu" asked for where it cannot run.
    """
    if backend not in BACKENDS:
        raise CanuError(f"unknown k-NN backend {backend!r}: set CLUSTERING.KNN_BACKEND to one of {BACKENDS}")
    if backend == "torch":
        return backend
    faiss = _faiss(required=backend != "auto")
    n_gpus = _faiss_gpus(faiss)
    cuda = _torch_has_cuda()
    if backend == "faiss-gpu" and not (n_gpus > 0 and cuda):
        why = ("the installed faiss has no GPU support (faiss-cpu)" if n_gpus == 0
               else "torch sees no CUDA device")
        raise CanuError(f"CLUSTERING.KNN_BACKEND='faiss-gpu' but {why}: install faiss with GPU support "
                        "(pip install faiss-gpu-cu12, with a CUDA build of torch) or set "
                        "CLUSTERING.KNN_BACKEND to 'auto', 'torch' or 'faiss-cpu'")
    if backend != "auto":
        return backend
    choice, why = _auto(faiss, n_gpus, cuda)
    if log and (choice, why) not in _LOGGED:
        _LOGGED.add((choice, why))
        logger.info("k-NN backend 'auto' -> %s (%s)", choice, why)
    return choice


def _ivf_index(faiss, x, nlist, nprobe, seed=0):
    """An IVF-Flat inner-product index on x: ``nlist`` lists (0 = 4 sqrt(N)), trained on a sample."""
    n, dim = x.shape
    nlist = int(nlist) if int(nlist) > 0 else int(4 * np.sqrt(n))
    nlist = max(1, min(nlist, n // 39))  # faiss wants >= 39 training points per list
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(seed).choice(n, min(n, 64 * nlist), replace=False)
    index.train(x[np.sort(sample)])
    index.add(x)
    index.nprobe = max(1, min(int(nprobe), nlist))
    return index


def _build_index(faiss, x, backend, nlist=0, nprobe=32):
    """The index holding x; (index, keepalive) with the GPU resources."""
    dim = x.shape[1]
    if backend == "faiss-gpu":
        import torch
        res = faiss.StandardGpuResources()
        config = faiss.GpuIndexFlatConfig()
        config.device = torch.cuda.current_device()  # this rank's GPU (faiss' default is GPU 0)
        index = faiss.GpuIndexFlatIP(res, dim, config)
    elif backend == "faiss-ivf":
        return _ivf_index(faiss, x, nlist, nprobe), None
    else:
        res = None
        index = faiss.IndexFlatIP(dim)
    index.add(x)
    return index, res


def _fill_missing(faiss, x, start, sims, idx):
    """IVF rows with fewer than k hits (id -1): exact search for those rows (in place)."""
    bad = np.flatnonzero((idx < 0).any(axis=1))
    if len(bad):
        sims[bad], idx[bad] = faiss.knn(x[bad + start], x, idx.shape[1], metric=faiss.METRIC_INNER_PRODUCT)


def _check(n, k, chunk, rows, precision):
    if not 1 <= k <= n:
        raise CanuError(f"k={k} neighbours asked for among {n} samples: need 1 <= k <= N")
    if int(chunk) < 1:
        raise CanuError(f"k-NN chunk={chunk} must be a positive number of queries (CLUSTERING.KNN_CHUNK)")
    if rows is not None and not 0 <= rows[0] <= rows[1] <= n:
        raise CanuError(f"query rows {tuple(rows)} outside [0, {n}]")
    if precision not in PRECISION_CHOICES:
        raise CanuError(f"unknown k-NN precision {precision!r}: set CLUSTERING.KNN_PRECISION to one of "
                        f"{PRECISION_CHOICES}")


def _candidates(backend, precision, faiss, n_gpus, cuda):
    """The (backend, precision) pairs "auto" may measure, the static default first."""
    if precision != "auto":
        precs = [precision]
    else:
        precs = ["fp32", "bf16", "fp16"] if cuda else ["fp32", "bf16"]
    torch_c = [("torch", p) for p in precs]
    if backend == "torch":
        return torch_c
    if backend != "auto":
        return [(backend, "fp32" if precision == "auto" else precision)]
    first = _auto(faiss, n_gpus, cuda)[0]
    return torch_c if first == "torch" else [(first, "fp32")] + torch_c


def resolve_knn(backend, precision, features, k, rows=None, info=None):
    """The (backend, precision) that searches ``features``: "auto" backends and precisions are
    measured on this machine (:mod:`.knn_calibrate`, once per process) when the search is large.

    Args:
        backend: one of ``BACKENDS``; precision: one of ``PRECISION_CHOICES``;
        features: (N, D) float32 array (or tensor) with unit rows; k: neighbours;
        rows: (start, stop) query rows (default all N);
        info: optional dict that receives "predicted_s", the calibration's predicted seconds of
            the search, when the choice was measured.
    Returns:
        (backend, precision): backend as :func:`resolve_backend`, precision in ``PRECISIONS``.
    """
    from canu_plugin.clustering import knn_calibrate
    resolve_backend(backend, log=False)  # checks the name and that it can run
    if backend == "torch" and precision != "auto":
        return "torch", precision
    faiss = _faiss(required=False)
    cands = _candidates(backend, precision, faiss, _faiss_gpus(faiss), _torch_has_cuda())
    n, dim = features.shape
    m = n if rows is None else rows[1] - rows[0]
    if len(cands) == 1 or knn_calibrate.gflop(m, n, dim) < knn_calibrate.MIN_GFLOP:
        return (resolve_backend(backend), cands[0][1]) if backend == "auto" else cands[0]
    choice, _why, predicted_s = knn_calibrate.calibrated(cands, features, k, m)
    if info is not None:
        info["predicted_s"] = predicted_s
    return choice


def choice_info(backend, precision, features, k):
    """{"backend": ...[, "precision": ...]}: what :func:`resolve_knn` runs (torch: with its first pass)."""
    chosen, prec = resolve_knn(backend, precision, features, k)
    return {"backend": chosen, "precision": prec} if chosen == "torch" else {"backend": chosen}


def _log_prediction(info, backend, precision, t0, t1):
    """Log "auto"'s predicted time of the search beside the measured one (when it measured)."""
    if "predicted_s" in info:
        name = f"torch/{precision}" if backend == "torch" else backend
        logger.info("k-NN on %s: predicted %.2f s, measured %.2f s (+ %.2f s choosing the backend)",
                    name, info["predicted_s"], time.perf_counter() - t1, t1 - t0)


def knn_search(features, k, backend="auto", chunk=8192, rows=None, precision="auto", nlist=0, nprobe=32):
    """k nearest neighbours of every row (or of ``rows``) among all rows, itself included.

    Args:
        features: (N, D) float32 C-contiguous array with unit rows (see ``inputs.as_unit_features``).
        k: neighbours per row, 1 <= k <= N.
        backend: one of ``BACKENDS`` (see :func:`resolve_backend`).
        chunk: at most this many queries per search call (> 0); faiss' chunks are balanced, so
            that none is tiny (faiss computes fewer than 20 queries without BLAS).
        rows: (start, stop) query rows (default: all N); the database is always all N rows.
        precision: torch backend's first pass, "fp32", "fp16" or "bf16" (same neighbours), or
            "auto" (measured with the backend, see :func:`resolve_knn`).
        nlist, nprobe: faiss-ivf's lists (0 = 4 sqrt(N)) and lists searched per query.
    Returns:
        (sims, idx): (M, k) float32 inner products, descending, and (M, k) int64 neighbour ids,
        M = stop - start. A row's own id comes first unless it has exact duplicates (torch: ties
        go to the smaller id; faiss breaks them its way). faiss-ivf is approximate.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    n = x.shape[0]
    _check(n, k, chunk, rows, precision)
    info, t0 = {}, time.perf_counter()
    backend, precision = resolve_knn(backend, precision, x, k, rows, info=info)
    if backend == "torch":
        from canu_plugin.clustering.knn_torch import knn_torch
        t1 = time.perf_counter()
        out = knn_torch(x, k, chunk=chunk, rows=rows, precision=precision)
        _log_prediction(info, backend, precision, t0, t1)
        return out
    t1 = time.perf_counter()
    start, stop = rows if rows is not None else (0, n)
    faiss = _faiss()
    index, _res = _build_index(faiss, x, backend, nlist, nprobe)
    sims = np.empty((stop - start, k), np.float32)
    idx = np.empty((stop - start, k), np.int64)
    m = stop - start
    bounds = np.linspace(0, m, -(-m // int(chunk)) + 1).astype(np.int64)  # balanced: no tiny last chunk
    for a, b in zip(bounds[:-1], bounds[1:]):
        sims[a:b], idx[a:b] = index.search(x[start + a:start + b], k)
    if backend == "faiss-ivf":
        _fill_missing(faiss, x, start, sims, idx)
    _log_prediction(info, backend, precision, t0, t1)
    logger.debug("k-NN of %d x %d, k=%d on %s", m, x.shape[1], k, backend)
    return sims, idx


__all__ = ["BACKENDS", "PRECISIONS", "PRECISION_CHOICES", "resolve_backend", "resolve_knn", "choice_info",
           "knn_search"]
