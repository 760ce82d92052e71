"""``auto``'s measured choice among the exact k-NN backends: a short calibration on this machine.

No fixed order is fastest everywhere: the faiss-cpu wheel bundles an OpenBLAS that runs a
generic kernel on some CPUs (35 GFLOP/s where torch's fp32 product runs 150+), while on others
faiss is the faster; bfloat16 products run ~2.5x float32 where the CPU has AMX (or on tensor
cores) and far slower where it does not. So where more than one exact candidate can run and the
search is large enough to matter (``MIN_GFLOP``), each candidate searches the same sample of the
features (``QUERIES`` queries against ``DATABASE`` rows, the real k and D) in interleaved
rounds; the fastest by its best round wins, but the default (the static order of
:func:`.knn._auto`) is kept unless the winner is faster by more than ``MARGIN`` (noise does
not flip the choice). The result is cached per process (one calibration per D, thread count and
device) and logged with the timings.

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
BUDGET_S = 1.0         # no further rounds once this much time was spent
MARGIN = 0.10          # the default is kept unless the fastest is > 10 % faster
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
    times = ", ".join(f"{label(c)} {t * 1e3:.1f} ms" for c, t in sorted(timings.items(), key=lambda ct: ct[1]))
    if pick == default and best != default:
        why = f"within {margin:.0%} of the fastest, the default is kept"
    else:
        why = "the fastest" + ("" if pick == default else f", {timings[default] / timings[pick]:.1f}x the default")
    return pick, f"measured on this machine ({times}): {why}"


def _search(cand, x, k, device):
    """One exact search of the first ``QUERIES`` rows of x among all its rows with ``cand``."""
    if cand[0] == "torch":
        from canu_plugin.clustering.knn_torch import knn_torch
        return knn_torch(x, k, rows=(0, min(QUERIES, len(x))), precision=cand[1], device=device)
    from canu_plugin.clustering.knn import _build_index, _faiss
    index, _res = _build_index(_faiss(), x, cand[0])
    return index.search(x[:QUERIES], k)


def _sync(device):
    if device is not None and str(device).startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def measure(candidates, x, k, device=None, rounds=ROUNDS, budget_s=BUDGET_S):
    """Best time of each candidate over interleaved rounds (one warm-up round untimed).

    Args:
        candidates: list of (backend, precision); x: (M, D) float32 sample, unit rows;
        k: neighbours; device: torch's device for the torch candidates.
    Returns:
        {candidate: seconds}.
    """
    best = {c: float("inf") for c in candidates}
    t_start = time.perf_counter()
    for r in range(rounds + 1):
        for c in candidates:
            _sync(device)
            t0 = time.perf_counter()
            _search(c, x, k, device)
            _sync(device)
            if r:
                best[c] = min(best[c], time.perf_counter() - t0)
        if r and time.perf_counter() - t_start > budget_s:
            break
    return best


def calibrated(candidates, features, k, device=None, measure_fn=None):
    """The chosen candidate (cached per process) and the reason, measured on a sample of features.

    Args:
        candidates: list of (backend, precision), the default first; features: (N, D) float32
            array (or tensor for torch-only candidates) with unit rows; k: neighbours.
        measure_fn: ``measure``'s stand-in (tests inject timings).
    Returns:
        ((backend, precision), reason).
    """
    import torch
    key = (tuple(candidates), int(features.shape[1]), torch.get_num_threads(), str(device))
    if key not in _CACHE:
        sample = features[:DATABASE]
        if not isinstance(sample, np.ndarray) and any(c[0] != "torch" for c in candidates):
            sample = sample.cpu().numpy()
        timings = (measure_fn or measure)(candidates, sample, min(int(k), len(sample)), device)
        _CACHE[key] = choose(timings, candidates[0])
        logger.info("k-NN backend 'auto' -> %s (%s)", label(_CACHE[key][0]), _CACHE[key][1])
    return _CACHE[key]


__all__ = ["QUERIES", "DATABASE", "MARGIN", "MIN_GFLOP", "gflop", "label", "choose", "measure", "calibrated"]
