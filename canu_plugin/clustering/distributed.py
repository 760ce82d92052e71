"""k-NN sharded over the DDP ranks, for feature sets beyond one GPU (torch.distributed: NCCL on
GPUs, gloo on CPU).

Every rank holds all N features (given, broadcast from rank 0, or all-gathered from per-rank
shares), searches its share of the query rows against all of them with the configured backend,
and the (N, k) lists are gathered on rank 0, which runs the Jaccard + DBSCAN stages alone
(``cluster(..., knn=...)``). The search of a row does not depend on which rank does it, so the
lists, and the labels, are those of one process.

Called on every rank (collective calls); the clustering hook uses :func:`sharded_knn_views`
when :func:`sharded_knn_enabled` says so (``CLUSTERING.KNN_SHARDED``).
"""
import numpy as np
import torch
import torch.distributed as dist

from canu_plugin.clustering.inputs import as_unit_features
from canu_plugin.clustering.knn import knn_search, resolve_knn
from canu_plugin.errors import CanuError

LAYOUTS = ("full", "root", "shares")
MODES = ("auto", "on", "off")


def _world():
    if not (dist.is_available() and dist.is_initialized()):
        raise CanuError("the sharded k-NN needs a torch.distributed process group: launch with --num-gpus N "
                        "(fast-reid's launch) or set CLUSTERING.KNN_SHARDED 'off'")
    return dist.get_world_size(), dist.get_rank()


def sharded_knn_enabled(mode="auto"):
    """Whether the k-NN is sharded: "on" with a process group of > 1 ranks, "auto" only when that
    group is NCCL (GPUs; on CPU ranks, faiss already uses every core of the machine), "off" never."""
    if mode not in MODES:
        raise CanuError(f"CLUSTERING.KNN_SHARDED={mode!r}: use one of {MODES}")
    if mode == "off" or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return False
    return mode == "on" or dist.get_backend() == "nccl"


def shard_bounds(n, world_size):
    """(world_size + 1,) int64 row bounds: rank r searches rows [bounds[r], bounds[r + 1])."""
    return np.linspace(0, n, world_size + 1).astype(np.int64)


def _comm_device():
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _all_gather_rows(local, n_rows):
    """All ranks' (n_r, ...) tensors concatenated in rank order (padded to the largest share)."""
    world, _ = _world()
    width = max(n_rows)
    padded = torch.zeros((width,) + tuple(local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:m] for p, m in zip(parts, n_rows)])


def share_features(features, layout="full", src=0):
    """The (N, D) unit float32 features on every rank, as a tensor on the process group's device.

    Args:
        features: "full": (N, D) on every rank; "root": (N, D) on rank ``src``, anything (None)
            elsewhere; "shares": this rank's consecutive (n_r, D) rows, ranks in order.
        layout: one of ``LAYOUTS``.
    Returns:
        (N, D) float32 tensor (CUDA with NCCL, CPU with gloo).
    """
    if layout not in LAYOUTS:
        raise CanuError(f"unknown feature layout {layout!r}: use one of {LAYOUTS}")
    world, rank = _world()
    dev = _comm_device()
    if layout == "full":
        return torch.from_numpy(as_unit_features(features)).to(dev)
    if layout == "shares":
        local = torch.from_numpy(as_unit_features(features)).to(dev)
        counts = [None] * world
        dist.all_gather_object(counts, len(local))
        return _all_gather_rows(local, counts)
    x = torch.from_numpy(as_unit_features(features)).to(dev) if rank == src else None
    box = [tuple(x.shape) if x is not None else None]
    dist.broadcast_object_list(box, src=src)
    if x is None:
        x = torch.empty(box[0], dtype=torch.float32, device=dev)
    dist.broadcast(x, src=src)
    return x


def _shared_choice(backend, precision, x, k, rows, rank, dst):
    """Rank ``dst``'s (backend, precision) for all ranks (a measured "auto" could differ between
    them); its error, if any, is raised on every rank (none is left waiting)."""
    box = [None]
    if rank == dst:
        try:
            box = [resolve_knn(backend, precision, x, k, rows)]
        except CanuError as e:
            box = [e]
    dist.broadcast_object_list(box, src=dst)
    if isinstance(box[0], Exception):
        raise box[0]
    return box[0]


def sharded_knn(features, k, layout="full", backend="auto", chunk=8192, precision="auto", nlist=0, nprobe=32, dst=0):
    """Exact (or faiss-ivf) k-NN of all N rows, each rank searching its share of the queries.

    Args:
        features, layout: see :func:`share_features`.
        k, backend, chunk, precision, nlist, nprobe: as :func:`.knn.knn_search` (rank ``dst``
            resolves "auto" and broadcasts its choice, so that all ranks search alike).
        dst: the rank that receives the lists.
    Returns:
        (sims, idx): (N, k) float32 and (N, k) int64 numpy arrays on rank ``dst``, None elsewhere.
    """
    world, rank = _world()
    x = share_features(features, layout, src=dst)
    bounds = shard_bounds(len(x), world)
    rows = (int(bounds[rank]), int(bounds[rank + 1]))
    if not 1 <= k <= len(x):
        raise CanuError(f"k={k} neighbours asked for among {len(x)} samples: need 1 <= k <= N")
    backend, precision = _shared_choice(backend, precision, x, k, rows, rank, dst)
    if backend == "torch":  # searches on the features' device, no host copy
        from canu_plugin.clustering.knn_torch import knn_torch
        sims, idx = knn_torch(x, k, chunk=chunk, rows=rows, precision=precision, device=x.device)
    else:
        sims, idx = knn_search(x.cpu().numpy(), k, backend, chunk, rows, precision, nlist, nprobe)
    del x
    counts = list(np.diff(bounds))
    dev = _comm_device()
    sims = _all_gather_rows(torch.from_numpy(sims).to(dev), counts)
    idx = _all_gather_rows(torch.from_numpy(idx).to(dev), counts)
    return (sims.cpu().numpy(), idx.cpu().numpy()) if rank == dst else None


def sharded_knn_views(views, cfg):
    """The hook's entry point: per clustering view, the k1-NN lists searched by all ranks.

    Args:
        views: on rank 0, the list of (N, D_v) views to cluster; ignored (None) elsewhere.
        cfg: config with the ``CLUSTERING`` keys (K1, KNN_BACKEND, KNN_CHUNK, KNN_PRECISION, KNN_IVF_*).
    Returns:
        list of (sims, idx), one per view, on rank 0; list of None elsewhere.
    """
    _, rank = _world()
    box = [len(views) if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    c = cfg.CLUSTERING
    return [sharded_knn(views[v] if rank == 0 else None, int(c.K1), "root", c.KNN_BACKEND, c.KNN_CHUNK,
                        c.KNN_PRECISION, c.KNN_IVF_NLIST, c.KNN_IVF_NPROBE) for v in range(box[0])]


__all__ = ["LAYOUTS", "MODES", "sharded_knn_enabled", "shard_bounds", "share_features", "sharded_knn",
           "sharded_knn_views"]
