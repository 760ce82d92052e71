"""Exact scores and final order of the torch k-NN's candidates (:mod:`.knn_torch`).

Each query row keeps a few candidates (k and a few more) whose exact scores (float64 inner
products rounded to float32, :func:`.knn_exact.exact_scores_csr`) decide its list. A pair's
score reads a whole database row (16 KiB at D = 2048 in float64), and the rows of one identity
lie anywhere in the features, so scored in query order nearly every pair reads its row from
memory. Rows of one identity share most of their candidates; so the query rows are scored in
the order of a label that follows the candidate graph (the smallest id among a row's first
``LABEL_NEIGHBOURS`` candidates, then the smallest label among theirs, ``LABEL_STEPS`` times):
a row's candidates are then mostly still in the cache from the rows scored just before. The
scores do not depend on the order.
"""
import torch

from canu_plugin.clustering.knn_exact import exact_scores_csr

LABEL_NEIGHBOURS = 8    # first candidates (by fast score) that the grouping label follows
LABEL_STEPS = 3         # propagation steps of the label


def neighbourhood_labels(n, rows, first, steps=LABEL_STEPS):
    """(R,) int64 grouping label per query row: the smallest id among its first candidates, then
    the smallest label among theirs, ``steps`` times (ids that are not query rows keep their own).

    Args:
        n: rows of the database; rows: (R,) int64 query ids; first: (R, m) int64 ids of each
            query row's first candidates.
    """
    lab = torch.arange(n, device=rows.device)
    lab[rows] = torch.minimum(rows, first.min(1).values)
    for _ in range(steps):
        lab[rows] = torch.minimum(lab[rows], lab[first].min(1).values)
    return lab[rows]


def _reordered(lens, order):
    """Pair positions of the rows in ``order`` (each row's CSR slice, rows in that order)."""
    ql = lens[order]
    offsets = torch.repeat_interleave((lens.cumsum(0) - lens)[order] - (ql.cumsum(0) - ql), ql)
    return offsets + torch.arange(len(offsets), device=lens.device)


def exact_topk(x, rows, cols, lens, first, k, x64=None):
    """Exact top k of each query row among its candidates.

    Args:
        x: (N, D) float32 tensor; rows: (R,) int64 query ids; cols: (P,) int64 candidate ids, row
            r's ``lens[r]`` (>= k) candidates consecutive, ascending and distinct; lens: (R,)
            int64; first: (R, m) int64 each row's first candidates by fast score (the grouping);
            x64: optional float64 copy of x.
    Returns:
        ((R, k) float32 exact scores, descending, ties by the smaller id; (R, k) int64 ids).
    """
    order = torch.argsort(neighbourhood_labels(len(x), rows, first), stable=True)
    pidx = _reordered(lens, order)
    scores = torch.empty(cols.shape, dtype=torch.float32, device=x.device)
    scores[pidx] = exact_scores_csr(x, rows[order], cols[pidx], lens[order], x64=x64)
    r = torch.repeat_interleave(torch.arange(len(rows), device=x.device), lens)
    pos = torch.arange(len(cols), device=x.device) - (lens.cumsum(0) - lens)[r]
    width = int(lens.max())
    vals = torch.full((len(rows), width), float("-inf"), device=x.device)
    ids = torch.full((len(rows), width), len(x), dtype=torch.int64, device=x.device)
    vals[r, pos], ids[r, pos] = scores, cols
    top, at = vals.sort(dim=1, descending=True, stable=True)  # ids ascending: ties go to the smaller id
    return top[:, :k], ids.gather(1, at[:, :k])


__all__ = ["LABEL_NEIGHBOURS", "LABEL_STEPS", "neighbourhood_labels", "exact_topk"]
