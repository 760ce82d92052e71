"""Exact k nearest neighbours on torch: blocked matrix products on the features' device.

This is the ``torch`` backend of :func:`.knn.knn_search`, for a CUDA build of torch with
``faiss-cpu`` (faiss-gpu wheels exist for a few CUDA versions only), and on the CPU for tests.

Scores and order. A pair's *exact score* is its inner product computed in float64 and rounded to
float32. Each row's neighbours are sorted by exact score, descending, ties by the smaller id; so
the lists do not depend on the device, the blocking or the precision of the first pass.

Two passes per block of queries:

1. a *fast pass*: the (B, N) products of the block against all rows, in ``precision`` ("fp32",
   or "fp16" / "bf16" on tensor cores), accumulated in float32 (TF32 and reduced-precision
   reductions are switched off), and the top ``k + margin`` of each row;
2. the *re-scoring*: the exact scores of those candidates, sorted, the first k kept.

The fast scores differ from the exact ones by at most ``delta`` (:func:`score_error_bound`), so
every true top-k neighbour has a fast score >= (k-th fast score) - 2 delta. A row whose candidate
list does not reach below that threshold (many near-ties at its k-th neighbour) gets a 4x wider
list, until it does or holds all N rows: the result equals the float32 one in every case.

Cost: N^2 D multiply-adds in the fast pass, N (k + margin) D in float64 for the re-scoring;
memory: the features (plus a half-precision copy), one (B, N) block (``BLOCK_BYTES``) and the
(N, k) output.
"""
import contextlib
import math

import numpy as np
import torch

from canu_plugin.clustering.knn import PRECISIONS

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_UNIT_ROUNDOFF = {"fp32": 2.0 ** -24, "fp16": 2.0 ** -11, "bf16": 2.0 ** -8}
BLOCK_BYTES = 1 << 30        # one block of fast scores (B, N)
_RESCORE_ELEMS = 1 << 22     # float64 elements gathered at once by the re-scoring (32 MiB)


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
    """Bound on |fast score - exact score| for rows of L2 norm <= 1 + 1e-4.

    Inputs rounded to ``precision`` (2u), the product rounded to it (u), float32 accumulation over
    ``dim`` terms and the rounding of the exact score ((dim + 2) 2^-24), fp16 subnormals
    (sqrt(dim) 2^-24), with 1 % slack. Returns a Python float (fp32, D = 2048: 1.2e-4).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not in {PRECISIONS}")
    u_in = 0.0 if precision == "fp32" else _UNIT_ROUNDOFF[precision]
    sub = math.sqrt(dim) * 2.0 ** -24 if precision == "fp16" else 0.0
    return 1.01 * (3.0 * u_in + (dim + 2) * 2.0 ** -24 + sub)


def torch_device(device=None):
    """``torch.device(device)`` if given, else CUDA when torch sees it, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def exact_scores(x, rows, cand):
    """Exact scores (float64 inner products rounded to float32) of query rows against candidates.

    Args:
        x: (N, D) float32 tensor; rows: (B,) int64 query ids; cand: (B, C) int64 candidate ids.
    Returns:
        (B, C) float32 tensor on x's device.
    """
    out = torch.empty(cand.shape, dtype=torch.float32, device=x.device)
    step = max(1, _RESCORE_ELEMS // max(1, cand.shape[1] * x.shape[1]))
    for a in range(0, len(rows), step):
        q = x[rows[a:a + step]].double().unsqueeze(2)
        out[a:a + step] = torch.bmm(x[cand[a:a + step]].double(), q).squeeze(2).float()
    return out


def rank_candidates(scores, cand, k):
    """The first k candidates of each row by score, descending, ties by the smaller id.

    Args:
        scores: (B, C) float32; cand: (B, C) int64 ids, distinct within a row; k <= C.
    Returns:
        ((B, k) float32 scores, (B, k) int64 ids), tensors.
    """
    by_id = cand.argsort(dim=1)
    cand, scores = cand.gather(1, by_id), scores.gather(1, by_id)
    top, order = scores.sort(dim=1, descending=True, stable=True)
    return top[:, :k], cand.gather(1, order[:, :k])


def _needed_widths(vals, k, delta, width):
    """Per row, how many of its ``width`` sorted fast scores can hold an exact top-k neighbour
    (those >= k-th - 2 delta), rounded up to k + a power of two (so that rows group), capped at width."""
    need = (vals.float() >= vals[:, k - 1:k].float() - 2.0 * delta).sum(1)
    extra = (need - k).clamp(min=0).float()
    rounded = torch.where(extra > 0, k + torch.exp2(torch.ceil(torch.log2(extra.clamp(min=1)))), float(k)).long()
    return need, rounded.clamp(max=width)


def candidate_groups(fast, k, margin, delta):
    """Yield (rows, cand): block rows and candidate ids that hold their exact top k.

    Args:
        fast: (B, N) fast scores; k: neighbours; margin: extra candidates at first (>= 0);
        delta: :func:`score_error_bound` of the fast scores.
    Yields:
        ((R,) int64 row positions in the block, (R, C) int64 candidate ids): for each row, every
        candidate whose fast score is >= its k-th fast score - 2 delta (rows grouped by that count,
        rounded up). A row whose top ``k + margin`` all pass is searched again 4x wider, until one
        fails or the list holds all N rows.
    """
    n = fast.shape[1]
    rows = torch.arange(fast.shape[0], device=fast.device)
    width = min(n, k + margin)
    while len(rows):
        vals, cand = (fast if len(rows) == fast.shape[0] else fast[rows]).topk(width, dim=1)
        need, widths = _needed_widths(vals, k, delta, width)
        done = need < width if width < n else torch.ones_like(need, dtype=torch.bool)
        for w in torch.unique(widths[done]).tolist():
            sel = done & (widths == w)
            yield rows[sel], cand[sel, :w]
        rows, width = rows[~done], min(n, 4 * width)


def knn_torch(features, k, chunk=8192, rows=None, precision="fp32", device=None, margin=None):
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
    Returns:
        (sims, idx): (stop - start, k) float32 exact scores, descending, ties by smaller id, and
        (stop - start, k) int64 ids; numpy arrays.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not in {PRECISIONS}")
    dev = torch_device(device)
    x = torch.as_tensor(features).to(dev, torch.float32)
    n, dim = x.shape
    lo, hi = rows if rows is not None else (0, n)
    fast_x = x if precision == "fp32" else x.to(_DTYPES[precision])
    delta, margin = score_error_bound(dim, precision), max(k, 16) if margin is None else int(margin)
    sims = torch.empty((hi - lo, k), dtype=torch.float32, device=dev)
    idx = torch.empty((hi - lo, k), dtype=torch.int64, device=dev)
    step = max(1, min(int(chunk), BLOCK_BYTES // (n * fast_x.element_size())))
    with torch.no_grad(), strict_matmul():
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            fast = fast_x[a:b] @ fast_x.T
            for r, cand in candidate_groups(fast, k, margin, delta):
                sims[r + a - lo], idx[r + a - lo] = rank_candidates(exact_scores(x, r + a, cand), cand, k)
            del fast
    return sims.cpu().numpy(), idx.cpu().numpy().astype(np.int64, copy=False)


__all__ = ["BLOCK_BYTES", "strict_matmul", "score_error_bound", "torch_device", "exact_scores",
           "rank_candidates", "candidate_groups", "knn_torch"]
