"""The k-NN sharded over 2 gloo processes gives the single-process lists and labels."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from canu_plugin.clustering import cluster_features, knn_search
from canu_plugin.clustering.distributed import (shard_bounds, sharded_knn, sharded_knn_enabled, sharded_knn_views,
                                                share_features)
from canu_plugin.clustering.synth import clustered_features
from canu_plugin.errors import CanuError

N, DIM, K1 = 1500, 64, 30
CASES = [("faiss-cpu", "fp32", "full"), ("torch", "fp32", "root"), ("faiss-cpu", "fp32", "shares"),
         ("torch", "bf16", "shares")]


def _features():
    return clustered_features(N, DIM, seed=11)[0]


def _inputs(x, layout, rank):
    if layout == "full":
        return x
    if layout == "root":
        return x if rank == 0 else None
    return x[:611] if rank == 0 else x[611:]  # uneven shares, unlike the search's split


def _worker(rank, world, init, out):
    dist.init_process_group("gloo", init_method=init, world_size=world, rank=rank)
    try:
        x = _features()
        flags = [sharded_knn_enabled(m) for m in ("auto", "on", "off")]
        np.testing.assert_array_equal(share_features(_inputs(x, "shares", rank), "shares").numpy(), x)
        for i, (backend, precision, layout) in enumerate(CASES):
            res = sharded_knn(_inputs(x, layout, rank), K1, layout=layout, backend=backend, precision=precision,
                              chunk=200)
            if rank == 0:
                np.save(os.path.join(out, f"case{i}_idx.npy"), res[1])
                np.save(os.path.join(out, f"case{i}_sims.npy"), res[0])
                np.save(os.path.join(out, f"case{i}_labels.npy"), cluster_features(x, knn=res)[0])
            else:
                assert res is None
        cfg = SimpleNamespace(CLUSTERING=SimpleNamespace(K1=K1, KNN_BACKEND="torch", KNN_CHUNK=300,
                                                         KNN_PRECISION="fp32", KNN_IVF_NLIST=0, KNN_IVF_NPROBE=8))
        views = sharded_knn_views([x, x[:, :32]] if rank == 0 else None, cfg)
        if rank == 0:
            np.save(os.path.join(out, "views_idx.npy"), np.stack([v[1] for v in views]))
        else:
            assert views == [None, None]
        np.save(os.path.join(out, f"flags{rank}.npy"), np.array(flags))
        try:  # rank 0 chooses for all; its error reaches every rank (none waits for a broadcast)
            sharded_knn(x, K1, backend="faiss-gpu")
            raised = False
        except CanuError as e:
            raised = "faiss-gpu" in str(e)
        np.save(os.path.join(out, f"raised{rank}.npy"), np.array(raised))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_two_gloo_processes_give_the_single_process_labels(tmp_path):
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'pg'}", str(tmp_path)), nprocs=2, join=True)
    x = _features()
    for i, (backend, precision, _) in enumerate(CASES):
        sims, idx = knn_search(x, K1, backend=backend, precision=precision)
        np.testing.assert_array_equal(np.load(tmp_path / f"case{i}_idx.npy"), idx)
        np.testing.assert_array_equal(np.load(tmp_path / f"case{i}_sims.npy"), sims)
        labels = cluster_features(x, backend=backend)[0]
        assert labels.max() > 20
        np.testing.assert_array_equal(np.load(tmp_path / f"case{i}_labels.npy"), labels)
    views = np.load(tmp_path / "views_idx.npy")
    np.testing.assert_array_equal(views[0], knn_search(x, K1, backend="torch")[1])
    np.testing.assert_array_equal(views[1], knn_search(x[:, :32] / np.linalg.norm(x[:, :32], axis=1, keepdims=True),
                                                       K1, backend="torch")[1])
    for rank in (0, 1):  # gloo: "auto" leaves the k-NN on rank 0, "on" shards it
        np.testing.assert_array_equal(np.load(tmp_path / f"flags{rank}.npy"), [False, True, False])
        assert np.load(tmp_path / f"raised{rank}.npy")


def test_without_a_process_group():
    assert not sharded_knn_enabled("auto") and not sharded_knn_enabled("on")
    with pytest.raises(CanuError, match="KNN_SHARDED"):
        sharded_knn_enabled("yes")
    with pytest.raises(CanuError, match="process group"):
        sharded_knn(_features(), 5)


def test_shard_bounds_cover_every_row_once():
    for n, w in [(10, 3), (7, 7), (5, 8), (1000, 4)]:
        b = shard_bounds(n, w)
        assert b[0] == 0 and b[-1] == n and len(b) == w + 1 and np.all(np.diff(b) >= 0)
        assert np.diff(b).max() - np.diff(b).min() <= 1
