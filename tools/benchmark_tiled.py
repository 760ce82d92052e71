#!/usr/bin/env python
"""Jaccard + DBSCAN at N = copies x N0 on real k-NN lists, without an N^2 k-NN: the CPU stages of
the clustering at a million samples, measured on this machine.

The exact k-NN lists of N0 samples (``benchmark_scale.py``'s features and lists, or computed here
with faiss) are tiled into ``copies`` disconnected copies whose ids are randomly permuted, so that
every row does exactly the work of its original and the memory accesses spread over all N ids as in
a real N-sample graph. The features are not copied: a view maps each id to its original row (the
Jaccard stage reads features only for the few pairs outside the lists). Each copy must get the
original labels, so the clusters and outliers are ``copies`` times those at N0 (checked).

    python tools/benchmark_tiled.py --features x.npy --idx idx.npy --copies 10   # 100k lists -> 1M
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_cluster as bc  # noqa: E402


class TiledFeatures:
    """(N, D) read-only view: row j is ``base[src[j]]`` (what the Jaccard stage needs: shape, rows)."""

    def __init__(self, base, src):
        self.base, self.src = base, src
        self.shape = (len(src), base.shape[1])
        self.dtype = base.dtype

    def __getitem__(self, ids):
        return self.base[self.src[ids]]


def exact_sims(x, idx, chunk=2048):
    """(N, k) float32 inner products of each row with its listed neighbours."""
    return np.concatenate([np.einsum("id,ikd->ik", x[a:a + chunk], x[idx[a:a + chunk]])
                           for a in range(0, len(x), chunk)]).astype(np.float32)


def tile(x, sims, idx, copies, seed=0):
    """(features view, sims, idx) of ``copies`` disconnected copies with randomly permuted ids."""
    n0, k = idx.shape
    n = n0 * copies
    new_id = np.random.default_rng(seed).permutation(n)          # old id -> new id
    old_of_new = np.argsort(new_id)
    idx_t = (idx[None] + (np.arange(copies, dtype=np.int64) * n0)[:, None, None]).reshape(n, k)
    return (TiledFeatures(x, (old_of_new % n0).astype(np.int64)), np.tile(sims, (copies, 1))[old_of_new],
            new_id[idx_t][old_of_new])


def stages(x, sims, idx, a):
    """Jaccard + DBSCAN timed, with the peak resident memory after each; labels and the figures."""
    from canu_plugin.clustering.cluster import dbscan_precomputed, resolve_workers
    from canu_plugin.clustering.jaccard import jaccard_from_knn
    dist, t_jac = bc._timed(jaccard_from_knn, x, sims, idx, a.k1, a.k2, max_dist=a.eps,
                            workers=resolve_workers(a.workers))
    peak_jac = bc._status_kib("VmHWM") / 2 ** 20
    labels, t_db = bc._timed(dbscan_precomputed, dist, a.eps, a.min_samples)
    return labels, {"n": len(idx), "jaccard_s": t_jac, "dbscan_s": t_db, "stored_pairs": int(dist.nnz),
                    "peak_jaccard_gib": peak_jac, "peak_gib": bc._status_kib("VmHWM") / 2 ** 20,
                    "clusters": int(labels.max()) + 1, "outliers": int((labels < 0).sum())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", required=True, help="(N0, D) float32 unit features (.npy)")
    p.add_argument("--idx", default="", help="their exact (N0, >= k1) lists (.npy); computed with faiss if absent")
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--json", default="")
    bc.add_common_args(p)
    a = p.parse_args(argv)
    bc._lean_import()
    from canu_plugin.clustering.knn import knn_search
    x = np.load(a.features)
    idx = np.load(a.idx)[:, :a.k1] if a.idx else knn_search(x, a.k1, backend="faiss-cpu")[1]
    sims = exact_sims(x, idx)
    _, base = stages(x, sims, idx, a)
    t0 = time.perf_counter()
    tx, tsims, tidx = tile(x, sims, idx, a.copies)
    tile_s = time.perf_counter() - t0
    _, big = stages(tx, tsims, tidx, a)
    ok = big["clusters"] == a.copies * base["clusters"] and big["outliers"] == a.copies * base["outliers"]
    print("| N | Jaccard s | DBSCAN s | Jaccard + DBSCAN us/sample | stored pairs | peak RSS GiB | clusters | outliers |")
    print("|---|---|---|---|---|---|---|---|")
    for r in (base, big):
        per = 1e6 * (r["jaccard_s"] + r["dbscan_s"]) / r["n"]
        print(f"| {r['n']} | {r['jaccard_s']:.1f} | {r['dbscan_s']:.1f} | {per:.0f} | "
              f"{r['stored_pairs']} | {r['peak_gib']:.2f} | {r['clusters']} | {r['outliers']} |")
    print(f"\n{a.copies} copies: clusters and outliers x {a.copies}: {'yes' if ok else 'NO'} (tiling took {tile_s:.1f} s)")
    if a.json:
        Path(a.json).write_text(json.dumps({"base": base, "tiled": big, "copies": a.copies, "consistent": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
