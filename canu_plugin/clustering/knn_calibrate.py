"""``auto``'s measured choice among the exact k-NN backends: a short calibration on this machine.

No fixed order is fastest everywhere: the faiss-cpu wheel bundles an OpenBLAS that runs a
generic kernel on some CPUs (35 GFLOP/s where torch's fp32 product runs 150+), while on others
faiss is the faster; bfloat16 products run ~2.5x float32 where the CPU has AMX (or on tensor
cores) and far slower where it does not. So where more than one exact candidate can run and the
search is large enough to matter (``MIN_GFLOP``), each candidate searches the same sample of the
features (``QUERIES`` queries against ``DATABASE`` rows, the real k and D) in interleaved
rounds, and its best round is scaled to the real search by phase: the products and top-k grow
with queries x rows, torch's float64 re-scoring with the queries, its set-up (half-precision
copy, error bounds) with the rows (at the sample's size the re-scoring and set-up would weigh
several times what they weigh at N = 30k, and hide the products' speed). The fastest predicted
wins, but the default (the static order of :func:`.knn._auto`) is kept unless the winner is
faster by more than ``MARGIN`` (noise does not flip the choice). Rounds stop after ``BUDGET_S``,
or once they took ``SHARE`` of the fastest candidate's predicted search. The result is cached per
process (one calibration per D, thread count, device and size class) and logged with the
predicted times.

All candidates give the same exact lists (torch's precisions are re-scored in float64: the
same lists and scores; faiss may order exact float ties differently).
"""
import logging
import time

import numpy as np

logger = logging.getLogger(__name__)

QUERIES = 128          # calibration queries ...
DATABASE = 4096        # ... against this many rows (about 2 GFLOP at D = 2048)
ROUNDS = 3             # interleaved timed rounds (after one untimed warm-up round)
BUDGET_S = 0.6         # no further rounds once this much time was spent (at least one timed round) ...
SHARE = 0.05           # ... or this share of the fastest candidate's predicted search
MARGIN = 0.10          # the default is kept unless the fastest is > 10 % faster
DROP = 3.0             # candidates this much slower than the best (on the sample) are not timed again
MIN_GFLOP = 20.0       # below 2 N^2 D / 1e9 = this, no calibration: the default runs
_CACHE = {}


def gflop(n_queries, n_rows, dim):
    """GFLOP of an exact search: 2 * queries * rows * D / 1e9."""
    return 2.0 * n_queries * n_rows * dim / 1e9


def label(cand):
    """"faiss-cpu" or "torch/bf16" for a (backend, precision) candidate."""
    return cand[0] if cand[0].startswith("faiss") else f"{cand[0]}/{cand[1]}"


def choose(timings, default, margin=MARGIN):
    """The candidate to use, from measured times.

    Args:
        timings: {(backend, precision): seconds (best round)}, the default among them.
        default: the candidate kept unless another is faster by more than ``margin``.
    Returns:
        (candidate, reason string with the timings).
    """
    best = min(timings, key=timings.get)
    pick = best if timings[best] < (1.0 - margin) * timings[default] else default
    times = ", ".join(f"{label(c)} {t:.3g} s" for c, t in sorted(timings.items(), key=lambda ct: ct[1]))
    if pick == default and best != default:
        why = f"within {margin:.0%} of the fastest, the default is kept"
    else:
        why = "the fastest" + ("" if pick == default else f", {timings[default] / timings[pick]:.1f}x the default")
    return pick, f"measured on this machine, predicted for this search: {times}; {why}"


def _search(cand, x, k, device):
    """One exact search of the first ``QUERIES`` rows of x among all its rows with ``cand``:
    {"pairs", "queries", "rows": seconds} of the parts that grow with queries x rows, with the
    queries and with the rows (faiss: all "pairs")."""
    _sync(device)
    t0 = time.perf_counter()
    if cand[0] == "torch":
        from canu_plugin.clustering.knn_torch import knn_torch
        prof = {}
        knn_torch(x, k, rows=(0, min(QUERIES, len(x))), precision=cand[1], device=device, profile=prof)
        return {"pairs": prof["products"] + prof["candidates"], "queries": prof["rescore"],
                "rows": time.perf_counter() - t0 - prof["products"] - prof["candidates"] - prof["rescore"]}
    from canu_plugin.clustering.knn import _build_index, _faiss
    index, _res = _build_index(_faiss(), x, cand[0])
    index.search(x[:QUERIES], k)
    _sync(device)
    return {"pairs": time.perf_counter() - t0}


def predict(parts, sample, target):
    """Seconds predicted for ``target`` = (queries, rows) from a sample's parts measured at
    ``sample`` = (queries, rows): {"pairs", "queries", "rows"} (or one float: all "pairs")."""
    if not isinstance(parts, dict):
        parts = {"pairs": float(parts)}
    (q, n), (tq, tn) = sample, target
    return (parts.get("pairs", 0.0) * (tq * tn) / (q * n) + parts.get("queries", 0.0) * tq / q
            + parts.get("rows", 0.0) * tn / n)


def _sync(device):
    if device is not None and str(device).startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def measure(candidates, x, k, device=None, rounds=ROUNDS, budget_s=BUDGET_S, predicted=None):
    """Each candidate's fastest round (its parts, see :func:`_search`) over interleaved rounds,
    after one untimed warm-up round; one 3x slower than the best after a round is dropped.

    Args:
        candidates: list of (backend, precision); x: (M, D) float32 sample, unit rows;
        k: neighbours; device: torch's device for the torch candidates;
        predicted: optional callable parts -> seconds of the real search; no further round once
            the calibration took ``SHARE`` of the fastest candidate's prediction (so that a small
            search does not pay for a long calibration).
    Returns:
        {candidate: {"pairs": s, "queries": s, "rows": s}}.
    """
    best = {c: None for c in candidates}
    running, t_start = list(candidates), time.perf_counter()
    for r in range(rounds + 1):
        for c in list(running):
            try:
                parts = _search(c, x, k, device)
            except (RuntimeError, MemoryError) as e:  # e.g. a precision this device cannot run
                logger.info("k-NN calibration: %s failed (%s), not a candidate", label(c), e)
                best[c] = {"pairs": float("inf")}
                running.remove(c)
                continue
            if r and (best[c] is None or sum(parts.values()) < sum(best[c].values())):
                best[c] = parts
        if r and running:  # a candidate 3x slower than the best so far cannot win: not timed again
            lead = min(sum(best[c].values()) for c in running)
            running = [c for c in running if sum(best[c].values()) <= DROP * lead]
            if predicted is not None:
                budget_s = min(budget_s, SHARE * min(predicted(best[c]) for c in running))
        if r and time.perf_counter() - t_start > budget_s:
            break
    return best


def calibrated(candidates, features, k, n_queries=None, device=None):
    """The chosen candidate (cached per process) and the reason, measured on a sample of features
    and predicted for the whole search (:func:`predict`).

    Args:
        candidates: list of (backend, precision), the default first; features: (N, D) float32
            array (or tensor) with unit rows; k: neighbours; n_queries: queries searched (N).
    Returns:
        ((backend, precision), reason, predicted seconds of the chosen candidate for this search).
    """
    import torch
    n, dim = features.shape
    n_queries = n if n_queries is None else n_queries
    size_class = int(np.log2(max(1.0, n_queries * float(n))))  # predictions hold within a factor 2 of size
    key = (tuple(candidates), int(dim), torch.get_num_threads(), str(device), size_class)
    if key not in _CACHE:
        sample = features[:DATABASE]
        if not isinstance(sample, np.ndarray) and any(c[0] != "torch" for c in candidates):
            sample = sample.cpu().numpy()
        shape = (min(QUERIES, len(sample)), len(sample))
        parts = measure(candidates, sample, min(int(k), len(sample)), device,
                        predicted=lambda p: predict(p, shape, (n_queries, n)))
        choice, why = choose({c: predict(p, shape, (n_queries, n)) for c, p in parts.items()}, candidates[0])
        _CACHE[key] = (choice, why, parts[choice], shape)
        logger.info("k-NN backend 'auto' -> %s (%s)", label(choice), why)
    choice, why, parts, shape = _CACHE[key]
    return choice, why, predict(parts, shape, (n_queries, n))


__all__ = ["QUERIES", "DATABASE", "SHARE", "MARGIN", "MIN_GFLOP", "gflop", "label", "choose", "predict", "measure",
           "calibrated"]
