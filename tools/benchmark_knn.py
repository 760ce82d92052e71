#!/usr/bin/env python
"""Each exact k-NN backend against this machine's own matrix-product rate, in one run.

Measures, in one process: the fp32 and bf16 (and, on CUDA, fp16) GEMM rate of torch on this
machine, then the exact k-NN of the same synthetic re-ID-like features (``clustering.synth``) with
each backend: its time, its rate (2 N^2 D / s) and that rate as a fraction of the fp32 GEMM's,
torch's phases (products, top-k candidates, float64 re-scoring), and whether its lists equal
torch/fp32's (rows that differ only by exactly tied scores are counted apart). Then ``auto``
from a fresh calibration: what it chose, the calibration's cost, and its time over the fastest
exact backend's, calibration included (the target: <= 1.2), and its predicted time. Run it on a quiet machine; nothing else should run.

    python tools/benchmark_knn.py                              # N = 32621 x 2048, k = 31 (~2-5 min)
    python tools/benchmark_knn.py --n 4000 --dim 256           # quick check
    python tools/benchmark_knn.py --backends torch/fp32 torch/bf16 --threads 2
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gemm_rates(dim, size, device, repeats=3):
    """{precision: GFLOP/s} of a (size, dim) @ (dim, size) product, best of ``repeats`` after a warm-up
    (torch's fp32 / bf16 / CUDA fp16, and on the CPU numpy's fp32: "numpy fp32")."""
    import torch
    from canu_plugin.clustering.knn_torch import strict_matmul
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    out = {}
    a = torch.randn(size, dim, device=device)
    with torch.no_grad(), strict_matmul():
        for name, dt in dtypes.items():
            m = a.to(dt)
            best = float("inf")
            for r in range(repeats + 1):
                _sync(device)
                t0 = time.perf_counter()
                m @ m.T
                _sync(device)
                best = min(best, time.perf_counter() - t0) if r else best
            out[name] = 2.0 * size * size * dim / best / 1e9
    if device.type == "cpu":  # numpy's own BLAS (OpenBLAS in the PyPI wheels), another fp32 kernel
        m = a.numpy()
        best = float("inf")
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            m @ m.T
            best = min(best, time.perf_counter() - t0) if r else best
        out["numpy fp32"] = 2.0 * size * size * dim / best / 1e9
    return out


def rate_label(name):
    """"torch fp32", "torch bf16", ... or "numpy fp32": the product a key of :func:`gemm_rates` names."""
    return name if name.startswith("numpy") else f"torch {name}"


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine():
    """CPU model, the flags that matter here, torch's threads, the BLAS faiss loaded (threadpoolctl)."""
    import torch
    info = {"threads": torch.get_num_threads()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split())
        info["flags"] = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"})
    except (OSError, StopIteration):
        pass
    try:
        import faiss  # noqa: F401  (loads its BLAS)
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        info["blas"] = [f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
                        f"{Path(p.get('filepath', '')).name})" for p in blas]
    except ImportError:
        pass
    return info


def run_backend(name, x, k):
    """(sims, idx, seconds, extra) of one backend: "faiss-cpu", "torch/bf16", ... or "auto"."""
    from canu_plugin.clustering import knn, knn_calibrate
    from canu_plugin.clustering.knn_torch import knn_torch
    extra = {}
    t0 = time.perf_counter()
    if name == "auto":
        knn_calibrate._CACHE.clear()
        info = {}
        choice = knn.resolve_knn("auto", "auto", x, k, info=info)
        extra.update(calibration_s=time.perf_counter() - t0, chose=knn_calibrate.label(choice), **info)
        sims, idx = knn.knn_search(x, k)  # the calibration is cached: this is the search alone
    elif name.startswith("torch/"):
        extra["profile"] = {}
        sims, idx = knn_torch(x, k, precision=name.split("/")[1], profile=extra["profile"])
    else:
        sims, idx = knn.knn_search(x, k, backend=name)
    return sims, idx, time.perf_counter() - t0, extra


def compare(x, sims, idx, ref_sims, ref_idx):
    """(rows with the reference's ids, rows that differ only among exactly tied scores)."""
    same = (idx == ref_idx).all(1)
    ties = 0
    for r in np.flatnonzero(~same):
        exact = (x[idx[r]].astype(np.float64) @ x[r].astype(np.float64)).astype(np.float32)
        ties += bool(np.array_equal(np.sort(exact)[::-1], ref_sims[r]))
    return int(same.sum()), ties


def _gemm_ratio(name, result, rates):
    """A torch backend's search time over the time its precision's raw GEMM (``rates``) takes for
    the search's 2 N^2 D ("1.32x"); "-" for the other backends."""
    prec = name.split("/")[1] if name.startswith("torch/") else None
    if prec not in rates or "gflop" not in result:
        return "-"
    return f"{result['s'] / (result['gflop'] / rates[prec]):.2f}x"


def table(n, dim, k, info, rates, results):
    """Markdown: the machine, its GEMM rates, one row per backend, auto's verdict."""
    flop = 2.0 * n * n * dim
    out = [f"N = {n}, D = {dim}, k = {k}; {info.get('cpu', '?')}; flags {' '.join(info.get('flags', []))}; "
           f"torch threads {info['threads']}; faiss BLAS: {'; '.join(info.get('blas', ['?']))}", "",
           "| GEMM on this machine | GFLOP/s |", "|---|---|"]
    out += [f"| {rate_label(p)} | {r:.0f} |" for p, r in rates.items()]
    out += ["", "| backend | k-NN s | GFLOP/s (2 N^2 D / s) | / fp32 GEMM | x raw GEMM time | products / selection / "
            "re-scoring s | re-scored per row | lists = torch/fp32 |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        prof = r.get("profile") or {}
        phases = " / ".join(f"{prof.get(p, 0.0):.1f}" for p in ("products", "candidates", "rescore")) if prof else "-"
        label = name + (f" -> {r['chose']} (calibration {r['calibration_s']:.2f} s, predicted "
                        f"{r.get('predicted_s', float('nan')):.2f} s)" if "chose" in r else "")
        lists = "yes" if r["same_rows"] == n else f"{r['same_rows']}/{n} rows, {r['tie_rows']} others tie-only"
        rate = flop / r["s"] / 1e9
        rescored = f"{prof['rescored']:.1f}" if "rescored" in prof else "-"
        out.append(f"| {label} | {r['s']:.2f} | {rate:.0f} | {rate / rates['fp32']:.2f} | {_gemm_ratio(name, r, rates):s} | "
                   f"{phases} | {rescored} | {lists} |")
    exact = {m: r["s"] for m, r in results.items() if m != "auto"}
    if exact:
        fastest = min(exact, key=exact.get)
        out.append(f"\nfastest exact backend: {fastest} ({exact[fastest]:.2f} s)")
        if "auto" in results:
            out.append(f"auto / fastest: {results['auto']['s'] / exact[fastest]:.2f}, calibration included "
                       "(target <= 1.2)")
    for name in ("torch/bf16", "torch/fp16"):
        if name in exact:
            out.append(f"{name} search / raw {name[6:]} GEMM time of its 2 N^2 D: {_gemm_ratio(name, results[name], rates)}"
                       " (target <= 1.5)")
    if "torch/fp32" in exact and "torch/bf16" in exact:
        out.append(f"torch bf16 first pass speed-up over fp32: {exact['torch/fp32'] / exact['torch/bf16']:.2f}x")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=32621)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--k", type=int, default=31)
    p.add_argument("--imgs-per-id", type=float, default=0.0, help="0 = Market-like below 20k samples, else MSMT-like")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", nargs="+", default=["faiss-cpu", "torch/fp32", "torch/bf16", "auto"],
                   help="faiss-cpu, faiss-gpu, torch/fp32, torch/bf16, torch/fp16, auto (torch/fp32 is the reference)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--gemm-size", type=int, default=4096)
    p.add_argument("--json", default="")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    import torch
    from canu_plugin.clustering import synth
    from canu_plugin.clustering.knn_torch import torch_device
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    per_id = a.imgs_per_id or (synth.MARKET_IMGS_PER_ID if a.n < 20000 else synth.MSMT_IMGS_PER_ID)
    x = synth.clustered_features(a.n, a.dim, imgs_per_id=per_id, seed=a.seed)[0]
    info, rates = machine(), gemm_rates(a.dim, a.gemm_size, torch_device())
    names = ["torch/fp32"] + [b for b in a.backends if b != "torch/fp32"]
    results, ref = {}, None
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        sims, idx, secs, extra = run_backend(name, x, a.k)
        ref = ref or (sims, idx)
        same, ties = compare(x, sims, idx, *ref)
        results[name] = dict(s=secs, gflop=2.0 * a.n * a.n * a.dim / 1e9, same_rows=same, tie_rows=ties, **extra)
    print(table(a.n, a.dim, a.k, info, rates, results))
    if a.json:
        Path(a.json).write_text(json.dumps({"n": a.n, "dim": a.dim, "k": a.k, "machine": info, "gemm_gflops": rates,
                                            "results": results}, indent=1))
    ok = all(r["same_rows"] + r["tie_rows"] == a.n for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
