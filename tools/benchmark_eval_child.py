"""The subprocesses of ``benchmark_eval.py`` (``--child``): generate a size's data, time the raw
float32 products, or run one evaluator (ours, fast-reid's cython or python one) and write its
results and peak memory. Ours runs twice: the first evaluation of a process (its ``auto`` product
choice timed on real rows) and a later one (the choice made), as a training run evaluates."""
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GIB = float(1 << 30)


def _status_gib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+)", f.read(), re.M).group(1)) / 2 ** 20


def make_split(num_query, num_gallery, dim, num_cams, seed):
    """Re-ID-like features split into query/gallery like Market-1501 (one query per id and camera).

    Returns:
        (x, pids, cams, is_query): (Q + G, dim) float32 unit rows, (Q + G,) int64 labels, (Q + G,) bool.
    """
    from canu_plugin.clustering.synth import clustered_features
    n = num_query + num_gallery
    x, pids, cams = clustered_features(n, dim, imgs_per_id=n / (num_query / 3.0), num_cams=num_cams, seed=seed)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(n)
    _, first = np.unique((pids * num_cams + cams)[order], return_index=True)  # one image per (id, cam)
    pick = rng.permutation(order[first])[:num_query]
    if len(pick) < num_query:  # more queries than (id, cam) pairs: add random others
        rest = np.setdiff1d(np.arange(n), pick)
        pick = np.concatenate([pick, rng.choice(rest, num_query - len(pick), replace=False)])
    is_query = np.zeros(n, bool)
    is_query[pick] = True
    return x, pids, cams, is_query


def torch_from(array):
    """A float32 CPU tensor of the array (shared memory)."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _load(a):
    data = np.load(a.labels)
    q = data["is_query"]
    return (np.load(a.features + ".q.npy"), np.load(a.features + ".g.npy"), data["pids"][q], data["pids"][~q],
            data["cams"][q], data["cams"][~q])


def _stable_ranks(dist):
    """(Q, G) float32 ranks of a stable argsort of each row: a tie-free matrix ordered like ours."""
    order = np.argsort(dist, axis=1, kind="stable")
    ranks = np.empty(dist.shape, np.float32)
    np.put_along_axis(ranks, order, np.arange(dist.shape[1], dtype=np.float32)[None, :], axis=1)
    return ranks


PRODUCT_USED = {}  # method -> the float32 product its distances ended with


def _run_method(a, qf, gf, qp, gp, qc, gc):
    """(cmc, all_AP, all_INP, dist or None, seconds spent on distances) of one method; the timed part."""
    import torch
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    spent = [0.0]
    if a.child == "ours":  # canu_plugin.evaluation.evaluate, with the distance blocks timed
        from canu_plugin.evaluation import feature_blocks, prepare_features, rank_metrics
        q, g = prepare_features(qf, gf, qp, gp, a.device)
        blocks = feature_blocks(q, g, a.metric)

        def timed(start, stop):
            t0 = time.perf_counter()
            out = blocks(start, stop)
            sync()
            spent[0] += time.perf_counter() - t0
            return out

        r = rank_metrics(timed, qp, gp, qc, gc, chunk=a.chunk, device=q.device)
        sync()
        PRODUCT_USED["ours"] = blocks.product  # the float32 product "auto" kept (None: it never decided)
        return r["cmc"], r["all_AP"], r["all_INP"], None, spent[0]
    from fastreid.evaluation.rank import evaluate_rank
    from fastreid.utils.compute_dist import build_dist
    t0 = time.perf_counter()
    dist = build_dist(qf, gf, a.metric)
    spent[0] = time.perf_counter() - t0
    if a.child == "fastreid-cy":
        from rank_cy import evaluate_cy
        return (*evaluate_cy(dist, qp, gp, qc, gc, 50, False), dist, spent[0])
    return (*evaluate_rank(dist, qp, gp, qc, gc, use_cython=False), dist, spent[0])


def product_times(qf, gf, rows=1024, repeats=2):
    """{"torch": s, "numpy": s}: the float32 product of all Q query rows with the (G, D) gallery by
    each backend, one (rows, G) product into a reused output, best of ``repeats`` after a warm-up,
    scaled by Q / rows (the distance product the evaluator cannot beat; no distances kept)."""
    import torch
    from canu_plugin.evaluation.distances import product_into
    q, g = qf[:rows], gf
    out, times = torch.empty(len(q), len(g)), {}
    with torch.no_grad():
        for name in ("torch", "numpy"):
            best = float("inf")
            for r in range(repeats + 1):
                t0 = time.perf_counter()
                product_into(name, q, g, out)
                best = min(best, time.perf_counter() - t0) if r else best
            times[name] = best * len(qf) / len(q)
    return times


def child(a):
    """Subprocess body: generate the data, time the raw products, or run one evaluator and write
    its results."""
    sys.path.insert(0, str(ROOT))
    if a.child == "product":
        qf, gf = (torch_from(np.load(a.features + ext)) for ext in (".q.npy", ".g.npy"))
        Path(a.out).write_text(json.dumps(product_times(qf, gf)))
        return
    if a.child == "gen":
        x, pids, cams, is_query = make_split(a.q, a.g, a.dim, a.cams, a.seed)
        np.save(a.features + ".q.npy", x[is_query])
        np.save(a.features + ".g.npy", x[~is_query])
        np.savez(a.labels, pids=pids, cams=cams, is_query=is_query)
        return
    import torch
    import canu_plugin  # noqa: F401  (fast-reid compat)
    from canu_plugin.evaluation import resolve_device
    import fastreid.evaluation.rank  # noqa: F401  (imported before the baseline, like ours)
    import fastreid.utils.compute_dist  # noqa: F401
    sys.path.insert(0, a.cy_dir)
    base = _status_gib("VmRSS")
    qf, gf, qp, gp, qc, gc = (torch.from_numpy(v) if i < 2 else v for i, v in enumerate(_load(a)))
    t0 = time.perf_counter()
    cmc, all_ap, all_inp, dist, dist_s = _run_method(a, qf, gf, qp, gp, qc, gc)
    res = {"time_s": time.perf_counter() - t0, "dist_s": dist_s, "peak_gib": _status_gib("VmHWM"), "base_gib": base,
           "product": PRODUCT_USED.get(a.child, "torch"),
           "device": str(resolve_device(a.device)) if a.child == "ours" else "cpu"}
    if a.child == "ours":  # a later evaluation in the same process (as in training): auto's product already chosen
        t0 = time.perf_counter()
        res["warm_dist_s"] = _run_method(a, qf, gf, qp, gp, qc, gc)[-1]
        res["warm_time_s"] = time.perf_counter() - t0
    if res["device"].startswith("cuda"):
        res["gpu_peak_gib"] = torch.cuda.max_memory_allocated() / GIB
    arrays = dict(cmc=np.asarray(cmc), ap=np.asarray(all_ap), inp=np.asarray(all_inp))
    if a.child == "fastreid-cy":  # untimed: the same evaluator on a tie-free, stably ordered matrix
        from rank_cy import evaluate_cy
        cmc, all_ap, all_inp = evaluate_cy(_stable_ranks(dist), qp, gp, qc, gc, 50, False)
        arrays.update(stable_cmc=np.asarray(cmc), stable_ap=np.asarray(all_ap), stable_inp=np.asarray(all_inp))
    np.savez(a.out + ".npz", **arrays)
    Path(a.out).write_text(json.dumps(res))
