#!/usr/bin/env python
"""How the clustering's time and peak memory grow with N (the cost model behind "a million images").

For each N: synthetic re-ID-like features (``clustering.synth``, via ``benchmark_cluster.py``'s
generator), then, each in its own subprocess, the whole DBSCAN path (k-NN -> sparse Jaccard ->
DBSCAN) with every exact backend asked for; each stage is timed and the process' peak resident
memory (VmHWM) is read after it (so the peaks are cumulative), and once right after the imports (the
baseline). The exact backends' labels are compared with each other. At ``--approx-n`` the
approximate backend (faiss-ivf) also runs, for each ``--nprobe``: its recall@k1 against the first
exact backend's lists and the ARI of its labels against the exact labels. Then our evaluator runs
at ``--eval-sizes`` (Market-1501 and MSMT17 by default; ``benchmark_eval.py``), beside the raw
float32 distance product of each size. The machine's GEMM rates are measured first, in the same run.

Then the cost model is fitted on the measured sizes (k-NN: a N^2 D; Jaccard, DBSCAN: b N; peak
memory: m0 + m1 N) and projected to ``--project`` samples. ``benchmark_tiled.py`` measures the
Jaccard + DBSCAN stages at 1M directly, on tiled copies of these lists.

    nice -n 10 python tools/benchmark_scale.py                       # 25k, 50k, 100k x 2048 (~30 min, 2 cores)
    python tools/benchmark_scale.py --sizes 3000 6000 --dim 256 --approx-n 6000 --eval-sizes 300x2000  # quick check
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_cluster as bc  # noqa: E402  (its generator, lean import and /proc readers)

GIB = float(1 << 30)


def _peak():
    return bc._status_kib("VmHWM") / 2 ** 20


def child(a):
    """Subprocess body: one backend on one feature file; stage timings and peaks as JSON on ``a.out``."""
    bc._lean_import()
    import faiss  # noqa: F401  (every library is imported before the baseline)
    import scipy.sparse  # noqa: F401
    import sklearn.cluster  # noqa: F401
    backend, _, precision = a.backend.partition("/")  # "torch/bf16": the torch backend's first pass
    precision = precision or ("auto" if backend == "auto" else a.precision)
    if backend in ("torch", "auto"):
        import torch  # noqa: F401
    from canu_plugin.clustering.cluster import dbscan_precomputed, resolve_workers
    from canu_plugin.clustering.jaccard import jaccard_from_knn
    from canu_plugin.clustering.knn import knn_search
    res = {"backend": a.backend, "precision": precision, "nprobe": a.nprobe, "base_gib": _peak()}
    x = np.load(a.features)
    workers = resolve_workers(a.workers)
    (sims, idx), res["knn_s"] = bc._timed(knn_search, x, a.k1, backend=backend, precision=precision,
                                          nprobe=a.nprobe)
    if backend == "auto":  # what it chose (cached by the search above)
        from canu_plugin.clustering.knn import resolve_knn
        from canu_plugin.clustering.knn_calibrate import label
        res["chose"] = label(resolve_knn(backend, precision, x, a.k1))
    res["peak_knn_gib"] = _peak()
    dist, res["jaccard_s"] = bc._timed(jaccard_from_knn, x, sims, idx, a.k1, a.k2, max_dist=a.eps, workers=workers)
    res["peak_jaccard_gib"] = _peak()
    res["stored_pairs"] = int(dist.nnz)
    del sims
    labels, res["dbscan_s"] = bc._timed(dbscan_precomputed, dist, a.eps, a.min_samples)
    res.update(peak_gib=_peak(), clusters=int(labels.max()) + 1, outliers=int((labels < 0).sum()))
    np.save(a.out + ".labels.npy", labels)
    np.save(a.out + ".idx.npy", idx)
    Path(a.out).write_text(json.dumps(res))


def _run(a, backend, feats, out, nprobe=32):
    cmd = [sys.executable, __file__, "--child", "--backend", backend, "--precision", a.precision, "--nprobe",
           str(nprobe), "--k1", str(a.k1), "--k2", str(a.k2), "--eps", str(a.eps), "--min-samples",
           str(a.min_samples), "--workers", str(a.workers), "--features", feats, "--out", out]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    res = json.loads(Path(out).read_text())
    res["wall_s"] = time.perf_counter() - t0
    res["total_s"] = res["knn_s"] + res["jaccard_s"] + res["dbscan_s"]
    return res, np.load(out + ".labels.npy"), np.load(out + ".idx.npy")


def recall_at_k(approx, exact):
    """Mean fraction of each row's exact k neighbours found by the approximate search: (N, k) ids each."""
    k = exact.shape[1]
    hits = (np.sort(approx, 1)[:, :, None] == exact[:, None, :]).any(1).sum(1)
    return float(hits.mean() / k)


def bench_size(a, n, tmp):
    """Generator, each exact backend and (at ``--approx-n``) the approximate one, for one N."""
    from sklearn.metrics import adjusted_rand_score
    feats = os.path.join(tmp, f"x{n}.npy")
    gen = bc._spawn("gen", _gen_args(a, n), n, feats, os.path.join(tmp, "gen.json"))
    row = {"n": n, "dim": a.dim, "ids": gen["ids"], "runs": []}
    ref_labels = ref_idx = None
    for backend in a.backends:
        print(f"  N={n} {backend} ...", file=sys.stderr, flush=True)
        res, labels, idx = _run(a, backend, feats, os.path.join(tmp, f"{backend.replace('/', '_')}{n}.json"))
        if ref_labels is None:
            ref_labels, ref_idx = labels, idx
        res["labels_equal_first"] = bool(np.array_equal(labels, ref_labels))
        res["idx_equal_first"] = float((idx == ref_idx).mean())
        row["runs"].append(res)
    if n == a.approx_n:
        for nprobe in a.nprobe:
            print(f"  N={n} faiss-ivf nprobe={nprobe} ...", file=sys.stderr, flush=True)
            res, labels, idx = _run(a, "faiss-ivf", feats, os.path.join(tmp, f"ivf{n}_{nprobe}.json"), nprobe)
            res.update(recall=recall_at_k(idx, ref_idx), ari=float(adjusted_rand_score(ref_labels, labels)))
            row["runs"].append(res)
    os.remove(feats)
    return row


def evaluator_sizes(a, tmp):
    """``benchmark_eval.py``'s run of our evaluator at ``--eval-sizes``, in this run: its JSON
    ({size: {"ours": {...}, "product_s": {...}}, ...}), or {} when no size is asked for."""
    if not a.eval_sizes:
        return {}
    out = os.path.join(tmp, "eval.json")
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "benchmark_eval.py"), "--methods", "ours",
           "--dim", str(a.dim), "--json", out, "--sizes", *a.eval_sizes]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(Path(out).read_text())


def eval_table(results):
    """Markdown: our evaluator per size against the raw float32 distance product of the same run."""
    out = ["| Q x G | evaluator s | of which distances s | fp32 distance product alone s (fastest) | "
           "evaluator / product | peak RSS GiB |", "|---|---|---|---|---|---|"]
    for size, r in results.items():
        if size in ("machine", "gemm_gflops") or "time_s" not in r.get("ours", {}):
            continue
        o, p = r["ours"], r.get("product_s", {})
        fastest = min(p, key=p.get) if p else None
        prod = f"{p[fastest]:.2f} ({fastest})" if fastest else "-"
        ratio = f"{o['time_s'] / p[fastest]:.2f}" if fastest else "-"
        out.append(f"| {size} | {o['time_s']:.2f} | {o['dist_s']:.2f} | {prod} | {ratio} | {o['peak_gib']:.2f} |")
    return "\n".join(out)


def _gen_args(a, n):
    return argparse.Namespace(dim=a.dim, seed=a.seed, imgs_per_id=a.imgs_per_id, k1=a.k1, k2=a.k2, eps=a.eps,
                              min_samples=a.min_samples, workers=a.workers)


def fit(rows, backend):
    """Least-squares cost model of one backend's runs: per-unit coefficients (see module docstring)."""
    runs = [(r["n"], r["dim"], next(x for x in r["runs"] if x["backend"] == backend)) for r in rows]
    n = np.array([r[0] for r in runs], np.float64)
    dim = runs[0][1]
    knn, jac, db = (np.array([r[2][key] for r in runs]) for key in ("knn_s", "jaccard_s", "dbscan_s"))
    peak = np.array([r[2]["peak_gib"] for r in runs])
    a_knn = float((knn * n ** 2 * dim).sum() / ((n ** 2 * dim) ** 2).sum())
    m1, m0 = np.polyfit(n, peak, 1) if len(n) > 1 else (peak[0] / n[0], 0.0)
    return {"backend": backend, "dim": dim, "knn_flops": 2.0 / a_knn, "jaccard_us_per_sample": 1e6 * jac.sum() / n.sum(),
            "dbscan_us_per_sample": 1e6 * db.sum() / n.sum(), "mem_gib_per_million": float(m1 * 1e6),
            "mem_base_gib": float(m0)}


def project(model, n, gpu_tflops):
    """Seconds and GiB at n samples: CPU stages from the fit, the k-NN at the measured rate and on a GPU."""
    jd = (model["jaccard_us_per_sample"] + model["dbscan_us_per_sample"]) * 1e-6 * n
    knn_flop = 2.0 * n * n * model["dim"]
    return {"n": n, "knn_cpu_s": knn_flop / model["knn_flops"], "knn_gpu_s": knn_flop / (gpu_tflops * 1e12),
            "jaccard_dbscan_s": jd, "peak_gib": model["mem_base_gib"] + model["mem_gib_per_million"] * n / 1e6}


def table(rows, models, proj, gpu_tflops):
    """Markdown: the growth table, the approximate runs, the fitted model and the projection."""
    out = ["| N | backend | k-NN s | Jaccard s | DBSCAN s | total s | peak RSS GiB (after k-NN / Jaccard / DBSCAN) | "
           "baseline GiB | stored pairs | clusters | outliers | labels = first backend |", "|" + "---|" * 12]
    approx = []
    for row in rows:
        for r in row["runs"]:
            if r["backend"] == "faiss-ivf":
                approx.append((row["n"], r))
                continue
            name = r["backend"] + (f" -> {r['chose']}" if "chose" in r else "")
            out.append(f"| {row['n']} | {name} | {r['knn_s']:.1f} | {r['jaccard_s']:.1f} | {r['dbscan_s']:.1f} | "
                       f"{r['total_s']:.1f} | {r['peak_knn_gib']:.2f} / {r['peak_jaccard_gib']:.2f} / {r['peak_gib']:.2f} | "
                       f"{r['base_gib']:.2f} | {r['stored_pairs']} | {r['clusters']} | {r['outliers']} | "
                       f"{'yes' if r['labels_equal_first'] else 'NO'} ({100 * r['idx_equal_first']:.3f} % ids) |")
    if approx:
        out += ["", "| N | approximate | nprobe | k-NN s | total s | peak RSS GiB | recall@k1 | ARI vs exact labels |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {n} | faiss-ivf | {r['nprobe']} | {r['knn_s']:.1f} | {r['total_s']:.1f} | {r['peak_gib']:.2f} | "
                f"{r['recall']:.4f} | {r['ari']:.4f} |" for n, r in approx]
    out += ["", "| backend | k-NN GFLOP/s (2 N^2 D / s) | Jaccard us/sample | DBSCAN us/sample | peak GiB = a + b N: a | "
            f"b per 1M | projected at N = {proj[0]['n']}: k-NN here s | k-NN at {gpu_tflops:g} TFLOP/s s | "
            "Jaccard + DBSCAN s | peak GiB |", "|" + "---|" * 10]
    for m, p in zip(models, proj):
        out.append(f"| {m['backend']} | {m['knn_flops'] / 1e9:.1f} | {m['jaccard_us_per_sample']:.0f} | "
                   f"{m['dbscan_us_per_sample']:.0f} | {m['mem_base_gib']:.2f} | {m['mem_gib_per_million']:.1f} | "
                   f"{p['knn_cpu_s']:.0f} | {p['knn_gpu_s']:.0f} | {p['jaccard_dbscan_s']:.0f} | {p['peak_gib']:.1f} |")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[25000, 50000, 100000])
    p.add_argument("--backends", nargs="+", default=["faiss-cpu", "torch", "torch/bf16", "auto"],
                   help="exact backends (torch/bf16: torch with that first pass; auto: measured choice); "
                        "the first is the reference")
    p.add_argument("--precision", default="fp32",
                   help="first pass of 'torch' named without one ('auto' measures its own)")
    p.add_argument("--approx-n", type=int, default=100000, help="N at which faiss-ivf runs (0: never)")
    p.add_argument("--nprobe", type=int, nargs="+", default=[32, 128], help="faiss-ivf probes (nlist = 4 sqrt(N))")
    bc.add_common_args(p)
    p.add_argument("--project", type=int, default=1000000, help="project the fitted model to this N")
    p.add_argument("--gpu-tflops", type=float, default=50.0, help="sustained GPU rate assumed for the projection")
    p.add_argument("--eval-sizes", nargs="*", default=["3368x19732", "11659x82161"],
                   help="QxG sizes at which our evaluator runs too (benchmark_eval.py; none: skip)")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--features", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    if a.child:
        a.nprobe = a.nprobe[0]
        return child(a)
    from benchmark_knn import gemm_rates, rate_label  # the machine's own product rate, in the same run
    from canu_plugin.clustering.knn_torch import torch_device
    gemm = gemm_rates(a.dim, 4096, torch_device())
    print("GEMM on this machine: " + ", ".join(f"{rate_label(p)} {r:.0f} GFLOP/s" for p, r in gemm.items()),
          file=sys.stderr, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        for n in a.sizes:
            print(f"N={n} D={a.dim} ...", file=sys.stderr, flush=True)
            rows.append(bench_size(a, n, tmp))
        print("evaluator ...", file=sys.stderr, flush=True)
        evals = evaluator_sizes(a, tmp)
    models = [fit(rows, b) for b in a.backends]
    proj = [project(m, a.project, a.gpu_tflops) for m in models]
    print("GEMM on this machine (GFLOP/s): " + ", ".join(f"{rate_label(p)} {r:.0f}" for p, r in gemm.items()) + "\n")
    print(table(rows, models, proj, a.gpu_tflops))
    if evals:
        print("\n" + eval_table(evals))
    if a.json:
        Path(a.json).write_text(json.dumps({"gemm_gflops": gemm, "rows": rows, "models": models, "projection": proj,
                                            "evaluator": evals}, indent=1))
    return 0 if all(r["labels_equal_first"] for row in rows for r in row["runs"] if r["backend"] != "faiss-ivf") else 1

if __name__ == "__main__":
    sys.exit(main())
