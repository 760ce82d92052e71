"""Exact k nearest neighbours on torch: blocked matrix products on the features' device.

This is the ``torch`` backend of :func:`.knn.knn_search`: on CUDA, and on CPUs whose matrix
products beat the BLAS that faiss bundles (``auto`` measures it, :mod:`.knn_calibrate`).

Scores and order. A pair's *exact score* is its inner product computed in float64 and rounded to
float32. Each row's neighbours are sorted by exact score, descending, ties by the smaller id; so
the lists do not depend on the device, the blocking or the precision of the first pass.

Two passes per block of queries:

1. a *fast pass*: the (B, N) products of the block against all rows, in ``precision`` ("fp32",
   or "fp16" / "bf16" on tensor cores / AMX), accumulated in float32 (TF32 and reduced-precision
   reductions are switched off), and each row's candidates (:mod:`.knn_select`: a threshold
   from a lower bound on the row's k-th fast score, no selection over all N scores);
2. the *re-scoring*, once every block has its candidates: the exact scores of the candidates that
   can still be among the top k, as one sampled float64 product (CPU) or float64 dots
   (elsewhere; :mod:`.knn_exact`), the rows in an order that keeps shared candidates in the cache
   (:mod:`.knn_rescore`), sorted, the first k kept.

The fast scores differ from the exact ones by at most ``delta_i + rel |f|``
(:func:`row_error_bounds`: the rounding of each row to ``precision`` is *measured*, its norm e_i,
so delta_i = e_i + max e + float32 accumulation; ``rel`` is the rounding of the half-precision
product; the worst case :func:`score_error_bound` gives about a 2x wider window). So every true
top-k neighbour has a fast score within 2 delta_i (plus the relative terms) of the k-th fast
score; only those candidates are re-scored (bf16, D = 2048: ~38 per row for k = 31). The
result equals the float32 one in every case.

Cost: N^2 D multiply-adds in the fast pass, one memory-bound pass over the N^2 scores (maxima of
column groups; :mod:`.knn_select`), N (k + a few) D float64 multiply-adds for the re-scoring;
memory: the features (plus a half-precision copy; on the CPU a float64 copy when it fits
``RESCORE_COPY_BYTES``), one (B, N) block (``BLOCK_BYTES``), the candidates (N x ~40 ids) and
the (N, k) output.
"""
import contextlib
import math
import time

import numpy as np
import torch

from canu_plugin.clustering.knn import PRECISIONS
from canu_plugin.clustering.knn_exact import exact_scores, exact_scores_csr, rank_candidates  # noqa: F401
from canu_plugin.clustering.knn_rescore import LABEL_NEIGHBOURS, exact_topk
from canu_plugin.clustering.knn_select import candidate_groups, select_candidates  # noqa: F401

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_UNIT_ROUNDOFF = {"fp32": 2.0 ** -24, "fp16": 2.0 ** -11, "bf16": 2.0 ** -8}
BLOCK_BYTES = 1 << 30        # one block of fast scores (B, N)
RESCORE_COPY_BYTES = 1 << 30  # CPU: a float64 copy of all rows for the re-scoring, made once, when it fits


@contextlib.contextmanager
def strict_matmul():
    """Plain IEEE products inside: float32 without TF32, float16 / bfloat16 accumulated in float32
    (whatever the training script set); the previous settings are restored on exit."""
    cm = torch.backends.cuda.matmul
    old = (torch.get_float32_matmul_precision(), cm.allow_fp16_reduced_precision_reduction,
           cm.allow_bf16_reduced_precision_reduction)
    torch.set_float32_matmul_precision("highest")
    cm.allow_fp16_reduced_precision_reduction = False
    cm.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old[0])
        cm.allow_fp16_reduced_precision_reduction, cm.allow_bf16_reduced_precision_reduction = old[1:]


def score_error_bound(dim, precision="fp32"):
    """Worst-case bound on |fast score - exact score| for rows of L2 norm <= 1 + 1e-4.

    Inputs rounded to ``precision`` (2u), the product rounded to it (u), float32 accumulation over
    ``dim`` terms and the rounding of the exact score ((dim + 2) 2^-24), fp16 subnormals
    (sqrt(dim) 2^-24), with 1 % slack. Returns a Python float (fp32, D = 2048: 1.2e-4).
    The search itself uses the tighter, measured :func:`row_error_bounds`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not in {PRECISIONS}")
    u_in = 0.0 if precision == "fp32" else _UNIT_ROUNDOFF[precision]
    sub = math.sqrt(dim) * 2.0 ** -24 if precision == "fp16" else 0.0
    return 1.01 * (3.0 * u_in + (dim + 2) * 2.0 ** -24 + sub)


def row_error_bounds(x, fast_x, precision="fp32"):
    """Measured bound on the fast scores' error: |f_ij - s_ij| <= delta_i + rel |f_ij| for all j.

    With r_i = fast_x_i - x_i (the rounding of row i to ``precision``, its norm e_i measured in
    float64) and n_i = |x_i|: |fast_x_i . fast_x_j - x_i . x_j| <= e_i n_j + n_i e_j + e_i e_j;
    the float32 accumulation adds gamma_D |fast_x_i| |fast_x_j|; the float32 rounding of the
    exact score 2^-23 (so that a bound that separates also separates the rounded scores); the
    rounding of the product to ``precision`` (no float32 output on the CPU) is ``rel`` |f|, and
    fp16 outputs below its normal range 2^-24. All with 1 % slack.

    Args:
        x: (N, D) float32 tensor; fast_x: (N, D) x in ``precision`` (x itself for fp32).
    Returns:
        ((N,) float32 tensor delta on x's device, float rel).
    """
    dim = x.shape[1]
    n = x.norm(dim=1).double()  # float32 norms: relative error ~ D 2^-24, inside the 1 % slack
    e = torch.zeros_like(n)
    if fast_x is not x:  # x - fast_x is exact in float32 (Sterbenz); in row blocks that stay in the cache
        for a in range(0, len(x), 2048):
            e[a:a + 2048] = torch.linalg.vector_norm(fast_x[a:a + 2048].float().sub_(x[a:a + 2048]), dim=1)
    n_max, e_max = float(n.max()), float(e.max())
    gamma = dim * 2.0 ** -24 / (1.0 - dim * 2.0 ** -24)
    delta = e * n_max + n * e_max + e * e_max + gamma * (n + e) * (n_max + e_max) + 2.0 ** -23
    if precision == "fp16":
        delta = delta + 2.0 ** -24
    rel = 0.0 if precision == "fp32" else _UNIT_ROUNDOFF[precision] / (1.0 - _UNIT_ROUNDOFF[precision])
    return (1.01 * delta).float(), 1.01 * rel


def torch_device(device=None):
    """``torch.device(device)`` if given, else CUDA when torch sees it, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _collect(groups, start):
    """A block's candidate groups as CSR pieces: (query ids, ascending candidate ids, lens, each
    row's first ``LABEL_NEIGHBOURS`` candidates by fast score, for the re-scoring's tiles)."""
    rows, cols, lens, first = [], [], [], []
    for r, c in groups:
        rows.append(r + start)
        cols.append(c.sort(dim=1).values.reshape(-1))
        lens.append(torch.full((len(r),), c.shape[1], dtype=torch.int64, device=c.device))
        head = c[:, :LABEL_NEIGHBOURS]
        first.append(torch.cat([head, head[:, :1].expand(-1, LABEL_NEIGHBOURS - head.shape[1])], 1))
    return rows, cols, lens, first


@contextlib.contextmanager
def _phase(profile, name, dev):
    """Adds the seconds spent inside to ``profile[name]`` (synchronising CUDA); no-op for None."""
    if profile is None:
        yield
        return
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    yield
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    profile[name] = profile.get(name, 0.0) + time.perf_counter() - t0


def knn_torch(features, k, chunk=8192, rows=None, precision="fp32", device=None, margin=None, profile=None):
    """Exact k nearest neighbours by inner product of query rows among all rows (itself included).

    Args:
        features: (N, D) float32 array or tensor with unit rows.
        k: neighbours per row, 1 <= k <= N (checked by the caller).
        chunk: at most this many queries per block (fewer when a (B, N) block would exceed
            ``BLOCK_BYTES``).
        rows: (start, stop) query rows to search (default: all N).
        precision: "fp32", "fp16" or "bf16" fast pass (same result, see the module docstring).
        device: where to compute (default: CUDA when torch sees it, else CPU).
        margin: extra candidates per row in the first round (default: max(k, 16)).
        profile: optional dict that receives the seconds of each phase ("setup", "products",
            "candidates", "rescore") and the mean number of re-scored candidates per row ("rescored").
    Returns:
        (sims, idx): (stop - start, k) float32 exact scores, descending, ties by smaller id, and
        (stop - start, k) int64 ids; numpy arrays.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not in {PRECISIONS}")
    dev = torch_device(device)
    with _phase(profile, "setup", dev):
        x = torch.as_tensor(features).to(dev, torch.float32)
        n, dim = x.shape
        lo, hi = rows if rows is not None else (0, n)
        fast_x = x if precision == "fp32" else x.to(_DTYPES[precision])
        (delta, rel), margin = row_error_bounds(x, fast_x, precision), max(k, 16) if margin is None else int(margin)
        x64 = x.double() if dev.type == "cpu" and n * dim * 8 <= RESCORE_COPY_BYTES else None
    step = max(1, min(int(chunk), BLOCK_BYTES // (n * fast_x.element_size())))
    pieces = ([], [], [], [])  # every block's candidates, re-scored together (tiles span blocks)
    block = None  # one (step, N) buffer for every block: a fresh one would fault in its pages each time
    with torch.no_grad(), strict_matmul():
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            with _phase(profile, "products", dev):
                if block is None:
                    block = torch.empty((min(step, hi - lo), n), dtype=fast_x.dtype, device=dev)
                fast = torch.matmul(fast_x[a:b], fast_x.T, out=block[:b - a])
            with _phase(profile, "candidates", dev):
                for acc, part in zip(pieces, _collect(select_candidates(fast, k, margin, delta[a:b], rel), a)):
                    acc.extend(part)
            del fast
        del block
        with _phase(profile, "rescore", dev):
            q, cols, lens, first = (torch.cat(p) for p in pieces)
            top, ids = exact_topk(x, q, cols, lens, first, k, x64)
            sims = torch.empty((hi - lo, k), dtype=torch.float32, device=dev)
            idx = torch.empty((hi - lo, k), dtype=torch.int64, device=dev)
            sims[q - lo], idx[q - lo] = top, ids
    if profile is not None:
        profile["rescored"] = len(cols) / max(1, hi - lo)
    return sims.cpu().numpy(), idx.cpu().numpy().astype(np.int64, copy=False)


__all__ = ["BLOCK_BYTES", "RESCORE_COPY_BYTES", "strict_matmul", "score_error_bound", "row_error_bounds",
           "torch_device", "exact_scores", "exact_scores_csr", "rank_candidates", "candidate_groups", "knn_torch"]
