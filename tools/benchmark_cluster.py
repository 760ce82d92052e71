#!/usr/bin/env python
"""Benchmark the clustering engine (sparse, ours) against the dense reference (research-code style).

For each size N: synthetic re-ID-like features (``canu_plugin.clustering.synth``: Market-like
identity sizes below 20k samples, MSMT-like above) are written to a temporary .npy; then ours and
the dense reference each run in their own subprocess, which times its stages (k-NN, Jaccard,
DBSCAN) and reports its peak resident memory (VmHWM) and its resident memory right after the
imports (the baseline); the labels are compared. The reference is skipped where its estimated
memory (3 float32 N x N matrices + features) exceeds ``--max-ref-gib`` or the available memory.

The subprocesses import only ``canu_plugin.clustering`` (not the package root, which pulls in
torch and fast-reid, ~0.8 GiB): the memory figures are the clustering's own.

    python tools/benchmark_cluster.py                      # N = 12936 and 32621, D = 2048
    python tools/benchmark_cluster.py --n 100000           # ours only (the reference cannot fit)
    python tools/benchmark_cluster.py --n 3000 --dim 256   # quick check
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GIB = float(1 << 30)


def _lean_import():
    """Make ``import canu_plugin.clustering`` work without running canu_plugin/__init__ (torch)."""
    if "canu_plugin" not in sys.modules:
        pkg = types.ModuleType("canu_plugin")
        pkg.__path__ = [str(ROOT / "canu_plugin")]
        sys.modules["canu_plugin"] = pkg


def _status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+)", f.read(), re.M).group(1))


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _run_ours(x, a):
    from canu_plugin.clustering.cluster import dbscan_precomputed, resolve_workers
    from canu_plugin.clustering.jaccard import jaccard_from_knn
    from canu_plugin.clustering.knn import knn_search
    workers = resolve_workers(a.workers)
    (sims, idx), t_knn = _timed(knn_search, x, a.k1, backend="faiss-cpu")
    dist, t_jac = _timed(jaccard_from_knn, x, sims, idx, a.k1, a.k2, max_dist=a.eps, workers=workers)
    labels, t_db = _timed(dbscan_precomputed, dist, a.eps, a.min_samples)
    return labels, {"knn_s": t_knn, "jaccard_s": t_jac, "dbscan_s": t_db, "workers": workers,
                    "knn": (sims, idx)}


def _difficulty(x, sims, idx, a):
    """Untimed: mean |row of V_qe| and upper-triangle pairs enumerated per sample (what our cost scales with)."""
    from canu_plugin.clustering import jaccard
    e = jaccard.expanded_neighbours(idx, a.k1)
    vqe = jaccard.query_expansion(jaccard.encoding_vectors(x, sims, idx, e), idx, a.k2)
    cols = np.bincount(vqe.indices, minlength=vqe.shape[1]).astype(np.float64)
    n = len(x)
    return {"vqe_per_row": vqe.nnz / n, "pairs_per_row": float((cols * (cols - 1) / 2).sum()) / n}


def _run_ref(x, a):
    from canu_plugin.clustering import reference as ref
    rank, t_knn = _timed(ref.knn_reference, x, a.k1)
    dist, t_jac = _timed(ref.jaccard_reference, x, a.k1, a.k2, rank=rank)
    labels, t_db = _timed(ref.dbscan_reference, dist, a.eps, a.min_samples)
    return labels, {"knn_s": t_knn, "jaccard_s": t_jac, "dbscan_s": t_db}


def child(a):
    """Subprocess body: one implementation (or the generator), results as JSON on ``a.out``."""
    _lean_import()
    if a.child == "gen":
        from canu_plugin.clustering import synth
        per_id = synth.MARKET_IMGS_PER_ID if a.imgs_per_id <= 0 and a.n < 20000 else (
            synth.MSMT_IMGS_PER_ID if a.imgs_per_id <= 0 else a.imgs_per_id)
        x, ids, _ = synth.clustered_features(a.n, a.dim, imgs_per_id=per_id, seed=a.seed)
        np.save(a.features, x)
        Path(a.out).write_text(json.dumps({"ids": int(ids.max()) + 1, "imgs_per_id": per_id}))
        return
    import faiss  # noqa: F401  (imported before the baseline, like the other libraries)
    import scipy.sparse  # noqa: F401
    import sklearn.cluster  # noqa: F401
    from canu_plugin.clustering import cluster, reference  # noqa: F401
    base = _status_kib("VmRSS")
    x = np.load(a.features)
    labels, res = (_run_ours if a.child == "ours" else _run_ref)(x, a)
    res.update(peak_gib=_status_kib("VmHWM") / 2 ** 20, base_gib=base / 2 ** 20,
               clusters=int(labels.max()) + 1, outliers=int((labels < 0).sum()))
    if "knn" in res:  # after the peak was read
        res.update(_difficulty(x, *res.pop("knn"), a))
    np.save(a.out + ".labels.npy", labels)
    Path(a.out).write_text(json.dumps(res))


def _spawn(mode, a, n, features, out):
    cmd = [sys.executable, __file__, "--child", mode, "--n", str(n), "--dim", str(a.dim), "--seed", str(a.seed),
           "--imgs-per-id", str(a.imgs_per_id), "--k1", str(a.k1), "--k2", str(a.k2), "--eps", str(a.eps),
           "--min-samples", str(a.min_samples), "--workers", str(a.workers), "--features", features, "--out", out]
    subprocess.run(cmd, check=True)
    res = json.loads(Path(out).read_text())
    if mode != "gen":
        res["labels"] = np.load(out + ".labels.npy")
    return res


def _mem_available_gib():
    with open("/proc/meminfo") as f:
        return int(re.search(r"MemAvailable:\s+(\d+)", f.read()).group(1)) / 2 ** 20


def ref_estimate_gib(n, dim):
    """Peak memory of the dense reference: V, V_qe (or the distance) and one more N x N float32
    alive together, plus the features and ~0.2 GiB of libraries."""
    return (3 * 4.0 * n * n + 4.0 * n * dim) / GIB + 0.2


def bench_size(a, n, tmp):
    """Run generator, ours and (if it fits) the reference for one N; returns a result dict."""
    feats = os.path.join(tmp, f"x{n}.npy")
    gen = _spawn("gen", a, n, feats, os.path.join(tmp, "gen.json"))
    row = {"n": n, "ids": gen["ids"], "ours": _spawn("ours", a, n, feats, os.path.join(tmp, f"ours{n}.json"))}
    est, avail = ref_estimate_gib(n, a.dim), _mem_available_gib()
    if a.skip_ref or est > a.max_ref_gib or est > avail - 1.0:
        why = "--skip-ref" if a.skip_ref else f"needs ~{est:.1f} GiB (limit {min(a.max_ref_gib, avail - 1.0):.1f})"
        row["ref_skipped"] = why
    else:
        row["ref"] = _spawn("ref", a, n, feats, os.path.join(tmp, f"ref{n}.json"))
        row["identical"] = bool(np.array_equal(row["ours"]["labels"], row["ref"]["labels"]))
    os.remove(feats)
    return row


def _line(n, name, r, identical):
    total = r["knn_s"] + r["jaccard_s"] + r["dbscan_s"]
    return (f"| {n} | {name} | {r['knn_s']:.2f} | {r['jaccard_s']:.2f} | {r['dbscan_s']:.2f} | {total:.2f} | "
            f"{r['peak_gib']:.2f} | {r['peak_gib'] - r['base_gib']:.2f} | {r['clusters']} | {r['outliers']} | "
            f"{identical} |")


def _hard(o):
    return f"{o['workers']}, {o['vqe_per_row']:.0f}, {o['pairs_per_row']:.0f}"


def table(rows):
    """Markdown: one line per (N, implementation), then the ratios."""
    out = ["| N | impl | k-NN s | Jaccard s | DBSCAN s | total s | peak RSS GiB | peak - baseline GiB | "
           "clusters | outliers | labels identical |", "|" + "---|" * 11]
    for row in rows:
        ident = "yes" if row.get("identical") else ("NO" if "ref" in row else "-")
        out.append(_line(row["n"], "ours (sparse)", row["ours"], ident))
        if "ref" in row:
            out.append(_line(row["n"], "dense reference", row["ref"], ident))
        else:
            out.append(f"| {row['n']} | dense reference | skipped: {row['ref_skipped']} |" + " |" * 8)
    out += ["", "| N | Jaccard+DBSCAN speed-up | ours end-to-end / ours k-NN | peak RSS ratio ref/ours | "
            "(peak - baseline) ratio | ours: threads, V_qe entries/row, pairs/row |", "|---|---|---|---|---|---|"]
    for row in rows:
        o = row["ours"]
        e2e = (o["knn_s"] + o["jaccard_s"] + o["dbscan_s"]) / o["knn_s"]
        if "ref" in row:
            r = row["ref"]
            speed = (r["jaccard_s"] + r["dbscan_s"]) / (o["jaccard_s"] + o["dbscan_s"])
            mem = r["peak_gib"] / o["peak_gib"]
            dmem = (r["peak_gib"] - r["base_gib"]) / (o["peak_gib"] - o["base_gib"])
            out.append(f"| {row['n']} | {speed:.1f}x | {e2e:.2f} | {mem:.1f}x | {dmem:.1f}x | {_hard(o)} |")
        else:
            out.append(f"| {row['n']} | - | {e2e:.2f} | - | - | {_hard(o)} |")
    return "\n".join(out)


def add_common_args(p):
    """The feature and clustering options shared with ``benchmark_scale.py``."""
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--imgs-per-id", type=float, default=0.0,
                   help="mean identity size; 0 = Market-like (17.2) below 20k samples, else MSMT-like (31.3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k1", type=int, default=30)
    p.add_argument("--k2", type=int, default=6)
    p.add_argument("--eps", type=float, default=0.6)
    p.add_argument("--min-samples", type=int, default=4)
    p.add_argument("--workers", type=int, default=0, help="threads of our Jaccard stage (0 = min(4, cores))")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[12936, 32621], help="sample counts N")
    p.add_argument("--n", type=int, nargs="+", default=None, help="overrides --sizes")
    add_common_args(p)
    p.add_argument("--max-ref-gib", type=float, default=16.0, help="skip the reference above this estimate")
    p.add_argument("--skip-ref", action="store_true", help="run ours only")
    p.add_argument("--json", default="", help="also write the results (without labels) here")
    p.add_argument("--child", choices=["gen", "ours", "ref"], help=argparse.SUPPRESS)
    p.add_argument("--features", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    if a.child:
        a.n = a.n[0]
        return child(a)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_cluster_") as tmp:
        for n in a.n or a.sizes:
            print(f"N={n} D={a.dim} ...", file=sys.stderr, flush=True)
            rows.append(bench_size(a, n, tmp))
    print(table(rows))
    if a.json:
        strip = [{k: ({kk: vv for kk, vv in v.items() if kk != "labels"} if isinstance(v, dict) else v)
                  for k, v in r.items()} for r in rows]
        Path(a.json).write_text(json.dumps(strip, indent=1))
    return 0 if all(r.get("identical", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
