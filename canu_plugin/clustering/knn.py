"""Exact k-nearest neighbours by inner product (cosine on L2-normalised features) with faiss.

The backend is faiss on the GPU when torch sees CUDA and the installed faiss has GPU support
(``faiss.get_num_gpus() > 0``), faiss on the CPU otherwise; ``CLUSTERING.KNN_BACKEND`` forces one.
Queries are searched in chunks, so the memory beyond the index is ``chunk * k`` results.
"""
import logging

import numpy as np

from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "faiss-gpu", "faiss-cpu")


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss is a dependency
        raise CanuError("faiss is not installed: pip install faiss-cpu (or faiss-gpu-cu12 for GPUs), "
                        "or `pip install -e .[cpu]`") from e
    return faiss


def _faiss_gpus(faiss):
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _torch_has_cuda():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return torch.cuda.is_available()


def resolve_backend(backend="auto"):
    """Pick the k-NN backend.

    Args:
        backend: "auto", "faiss-gpu" or "faiss-cpu".
    Returns:
        "faiss-gpu" or "faiss-cpu". "auto" gives "faiss-gpu" only when faiss was built with GPU
        support and sees a GPU *and* torch sees CUDA.
    Raises:
        CanuError: unknown name, or "faiss-gpu" asked for where it cannot run.
    """
    if backend not in BACKENDS:
        raise CanuError(f"unknown k-NN backend {backend!r}: set CLUSTERING.KNN_BACKEND to one of {BACKENDS}")
    faiss = _faiss()
    n_gpus = _faiss_gpus(faiss)
    gpu_ok = n_gpus > 0 and _torch_has_cuda()  # torch is imported only when faiss has GPUs
    if backend == "faiss-gpu" and not gpu_ok:
        why = ("the installed faiss has no GPU support (faiss-cpu)" if n_gpus == 0
               else "torch sees no CUDA device")
        raise CanuError(f"CLUSTERING.KNN_BACKEND='faiss-gpu' but {why}: install faiss with GPU support "
                        "(pip install faiss-gpu-cu12, with a CUDA build of torch) or set "
                        "CLUSTERING.KNN_BACKEND to 'auto' or 'faiss-cpu'")
    if backend == "auto":
        return "faiss-gpu" if gpu_ok else "faiss-cpu"
    return backend


def _build_index(faiss, x, backend):
    """An exact inner-product index holding x; (index, keepalive) with the GPU resources."""
    dim = x.shape[1]
    if backend == "faiss-gpu":
        res = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(res, dim)
    else:
        res = None
        index = faiss.IndexFlatIP(dim)
    index.add(x)
    return index, res


def knn_search(features, k, backend="auto", chunk=8192):
    """Exact k nearest neighbours of every row among all rows (itself included).

    Args:
        features: (N, D) float32 C-contiguous array with unit rows (see ``inputs.as_unit_features``).
        k: neighbours per row, 1 <= k <= N.
        backend: "auto", "faiss-gpu" or "faiss-cpu" (see :func:`resolve_backend`).
        chunk: at most this many queries per search call (> 0); the chunks are balanced, so that
            none is tiny (faiss computes fewer than 20 queries without BLAS).
    Returns:
        (sims, idx): (N, k) float32 inner products, descending, and (N, k) int64 neighbour ids.
        A row's own id comes first unless it has exact duplicates (faiss breaks ties).
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise CanuError(f"k={k} neighbours asked for among {n} samples: need 1 <= k <= N")
    if int(chunk) < 1:
        raise CanuError(f"k-NN chunk={chunk} must be a positive number of queries (CLUSTERING.KNN_CHUNK)")
    backend = resolve_backend(backend)
    faiss = _faiss()
    index, _res = _build_index(faiss, x, backend)
    sims = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    bounds = np.linspace(0, n, -(-n // int(chunk)) + 1).astype(np.int64)  # balanced: no tiny last chunk
    for start, stop in zip(bounds[:-1], bounds[1:]):
        sims[start:stop], idx[start:stop] = index.search(x[start:stop], k)
    logger.debug("k-NN of %d x %d, k=%d on %s", n, x.shape[1], k, backend)
    return sims, idx


__all__ = ["BACKENDS", "resolve_backend", "knn_search"]
