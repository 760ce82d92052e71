"""Exact scores of candidate pairs for the torch k-NN's re-scoring (:mod:`.knn_torch`).

A pair's exact score is its inner product computed in float64 and rounded to float32. On the CPU
the pairs of a block are one sampled sparse float64 product (``torch.sparse.sampled_addmm``: no
(pairs, D) gather, ~2x the gather + batched product, which cost more than the fast pass itself);
elsewhere float64 dots of gathered pairs. Both give the same values (tests).
"""
import warnings

import torch

_RESCORE_ELEMS = 1 << 25     # float64 elements of database rows (or gathered pairs) at once (256 MiB)


def _csr_chunk(rows_of, cols, lens, c0, c1):
    """The pairs whose column lies in [c0, c1): (crow, local cols, mask over all pairs)."""
    mask = (cols >= c0) & (cols < c1)
    counts = torch.zeros(len(lens), dtype=torch.int64, device=cols.device).index_add_(0, rows_of, mask.long())
    crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return crow, cols[mask] - c0, mask


def _pair_dots(q, rows_of, db, cols):
    """Float64 dots q[rows_of[p]] . db[cols[p]] for every pair p, gathered in chunks: (P,) float64."""
    out = torch.empty(cols.shape, dtype=torch.float64, device=db.device)
    step = max(1, _RESCORE_ELEMS // (8 * db.shape[1]))
    for a in range(0, len(cols), step):
        out[a:a + step] = (db[cols[a:a + step]].double() * q[rows_of[a:a + step]]).sum(1)
    return out


def _sampled_dots(q, crow, db, cols):
    """The same dots as one sampled product (CPU: no (pairs, D) gather), from the CSR pattern."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        pattern = torch.sparse_csr_tensor(crow, cols, torch.zeros(len(cols), dtype=torch.float64, device=db.device),
                                          size=(len(q), len(db)), check_invariants=False)
        return torch.sparse.sampled_addmm(pattern, q, db.double().T).values()


def exact_scores_csr(x, rows, cols, lens, sampled=None, x64=None):
    """Exact scores (float64 inner products rounded to float32) of variable-length candidate lists.

    Args:
        x: (N, D) float32 tensor; rows: (R,) int64 query ids; cols: (P,) int64 candidate ids,
            row r's ``lens[r]`` candidates consecutive and ascending; lens: (R,) int64.
        sampled: one sampled sparse product per column chunk (default on the CPU, where it is
            ~2x the gather), else float64 dots of gathered pairs (any device); same values.
        x64: optional float64 copy of x (saves converting the rows at every call).
    Returns:
        (P,) float32 tensor on x's device.
    """
    n, dim = x.shape
    sampled = x.device.type == "cpu" if sampled is None else sampled
    out = torch.empty(cols.shape, dtype=torch.float32, device=x.device)
    rows_of = torch.repeat_interleave(torch.arange(len(lens), device=x.device), lens)
    db = x if x64 is None else x64
    q = db[rows].double()
    if not sampled:
        return _pair_dots(q, rows_of, db, cols).float()
    step = n if x64 is not None else max(1, _RESCORE_ELEMS // dim)
    for c0 in range(0, n, step):
        c1 = min(n, c0 + step)
        crow, local, mask = _csr_chunk(rows_of, cols, lens, c0, c1)
        if len(local):
            out[mask] = _sampled_dots(q, crow, db[c0:c1], local).float()
    return out


def exact_scores(x, rows, cand):
    """Exact scores (float64 inner products rounded to float32) of query rows against candidates.

    Args:
        x: (N, D) float32 tensor; rows: (B,) int64 query ids; cand: (B, C) int64 candidate ids.
    Returns:
        (B, C) float32 tensor on x's device.
    """
    srt, order = cand.sort(dim=1)
    lens = torch.full((len(rows),), cand.shape[1], dtype=torch.int64, device=x.device)
    vals = exact_scores_csr(x, rows, srt.reshape(-1), lens).view(cand.shape)
    return torch.empty_like(vals).scatter_(1, order, vals)


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


__all__ = ["exact_scores_csr", "exact_scores", "rank_candidates"]
