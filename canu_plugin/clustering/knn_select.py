"""Which fast scores the torch k-NN re-scores exactly (:mod:`.knn_torch`): candidate selection.

For each query row, the candidates are every column whose fast score can still belong to the exact
top k: its upper bound ``f + rel |f|`` reaches the k-th fast score's lower bound
``f_k - rel |f_k| - 2 delta`` (``delta``, ``rel``: the fast scores' error bound, see
:func:`.knn_torch.row_error_bounds`). Two ways to find them, the same candidates:

* :func:`threshold_candidates`, the default: a *lower bound* on each row's k-th fast score from the
  k-th largest of the maxima of strided column groups (one memory-bound max pass over the scores),
  the threshold that bound implies, a second look at the few groups whose maximum reaches it, and
  a sort of their survivors only. No selection over all N scores of a row.
* :func:`candidate_groups`: ``topk`` of the first ``k + margin`` per row, widened 4x for rows whose
  list does not reach below the threshold. The fallback for blocks where the threshold lets too
  many columns through (near-duplicate features, degenerate rows).
"""
import torch

COLUMNS_PER_GROUP = 8  # strided column groups whose maxima bound each row's k-th fast score
MAX_SURVIVORS = 4096   # a row with more survivors sends its block to the top-k path


def needed_widths(vals, k, delta, rel, width):
    """Per row, how many of its ``width`` descending fast scores can hold an exact top-k neighbour
    (upper bound f + rel |f| >= k-th lower bound f_k - rel |f_k| - 2 delta), and that count rounded
    up to k + a power of two (so that rows group), capped at width.

    Args:
        vals: (R, >= width) fast scores, descending (-inf padding allowed after the first k);
        delta: (R,) tensor; rel: float.
    Returns:
        ((R,) int64 count, (R,) int64 rounded count).
    """
    v = vals.float()
    hi = v + rel * v.abs()
    lo_k = v[:, k - 1:k] - rel * v[:, k - 1:k].abs() - 2.0 * delta.view(-1, 1)
    need = (hi >= lo_k).sum(1)
    extra = (need - k).clamp(min=0).float()
    rounded = torch.where(extra > 0, k + torch.exp2(torch.ceil(torch.log2(extra.clamp(min=1)))), float(k)).long()
    return need, rounded.clamp(max=width)


def candidate_groups(fast, k, margin, delta, rel=0.0):
    """Yield (rows, cand): block rows and candidate ids that hold their exact top k (top-k path).

    Args:
        fast: (B, N) fast scores; k: neighbours; margin: extra candidates at first (>= 0);
        delta, rel: the fast scores' error bound delta_i + rel |f| (delta a float or a (B,) tensor).
    Yields:
        ((R,) int64 row positions in the block, (R, C) int64 candidate ids): for each row, every
        candidate that can still be among its exact top k (rows grouped by that count, rounded
        up). A row whose top ``k + margin`` all can is searched again 4x wider, until one cannot
        or the list holds all N rows.
    """
    n = fast.shape[1]
    rows = torch.arange(fast.shape[0], device=fast.device)
    delta = torch.as_tensor(delta, dtype=torch.float32, device=fast.device).expand(fast.shape[0])
    width = min(n, k + margin)
    while len(rows):
        vals, cand = (fast if len(rows) == fast.shape[0] else fast[rows]).topk(width, dim=1)
        need, widths = needed_widths(vals, k, delta[rows], rel, width)
        done = need < width if width < n else torch.ones_like(need, dtype=torch.bool)
        for w in torch.unique(widths[done]).tolist():
            sel = done & (widths == w)
            yield rows[sel], cand[sel, :w]
        rows, width = rows[~done], min(n, 4 * width)


def _bits(t):
    """t's bits as a signed integer tensor of the same size (int16 for half precisions, int32 for
    float32): for positive values their order is the values' order, negative values come below."""
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32)


def _group_maxima(fast, k, m=None):
    """Strided column groups: column c < G m is in group c mod G, G = N // m (m smaller when N < m k).

    Returns:
        ((B, G) the element of each group with the largest bits, in fast's dtype: the group's
        maximum whenever the group holds a positive score; (B, N - G m) the columns left over; G; m).
    """
    b, n = fast.shape
    m = max(1, min(int(COLUMNS_PER_GROUP if m is None else m), n // k))
    g = n // m
    maxima = _bits(fast)[:, :m * g].view(b, m, g).amax(1).view(fast.dtype)  # integer max: ~3x a float one
    return maxima, fast[:, m * g:], g, m


def kth_lower_bound(fast, k, m=None):
    """(B,) lower bound on each row's k-th largest score, in ``fast``'s dtype.

    Each level keeps one element per strided group of m columns (:func:`_group_maxima`), until
    at most 16 k are left; the k-th largest of those is the k-th largest of k distinct scores of
    the row, so it is <= the row's k-th largest. It is close to it when the top k fall in
    distinct groups, which strided groups make likely whatever the rows' order.
    """
    pool = fast
    while pool.shape[1] > 16 * k:
        maxima, rest = _group_maxima(pool, k, m)[:2]
        pool = torch.cat([maxima, rest], 1)
    return pool.topk(k, dim=1).values[:, k - 1]


def _threshold(bound, delta, rel, dtype):
    """(B,) per-row threshold in ``dtype``, rounded down: every score at or above the k-th lower
    bound ``bound - rel |bound| - 2 delta`` once its own error ``rel |f|`` is added is above it."""
    t = bound.float()
    lo = t - rel * t.abs() - 2.0 * delta
    thr = torch.where(lo >= 0, lo / (1.0 + rel), lo / (1.0 - rel))
    thr = thr - (thr.abs() * 2.0 ** -20 + 2.0 ** -60)  # float32 rounding of the lines above
    out = thr.to(dtype)
    return torch.where(out.float() > thr, torch.nextafter(out, torch.full_like(out, float("-inf"))), out)


def _survivors(fast, k, delta, rel):
    """(rows, cols) of the scores at or above each row's threshold, by row, or None when a row's
    threshold is not positive. Only the groups whose maximum reaches the threshold are read
    again, so the N^2 scores are read once (by the first maxima)."""
    fast = fast.contiguous()
    maxima, rest, g, m = _group_maxima(fast, k)
    thr = _threshold(kth_lower_bound(torch.cat([maxima, rest], 1), k), delta, rel, fast.dtype)
    if not bool((thr > 0).all()):  # the integer maxima are the groups' maxima for positive scores only
        return None
    thr_bits = _bits(thr)[:, None]
    gr, gg = (_bits(maxima) >= thr_bits).nonzero(as_tuple=True)
    cols = gg[:, None] + g * torch.arange(m, device=fast.device)  # (P, m) the groups' columns
    vals = _bits(fast).view(-1).index_select(0, (cols + (gr * fast.shape[1])[:, None]).view(-1)).view(cols.shape)
    pi, pj = (vals >= thr_bits[gr]).nonzero(as_tuple=True)
    rr, rc = (_bits(rest) >= thr_bits).nonzero(as_tuple=True)
    rows, cols = torch.cat([gr[pi], rr]), torch.cat([cols[pi, pj], rc + m * g])
    order = torch.argsort(rows, stable=True)
    return rows[order], cols[order]


def threshold_candidates(fast, k, delta, rel=0.0, max_survivors=None):
    """The candidates of :func:`candidate_groups` by a threshold pass (no top-k over N columns).

    Args:
        fast: (B, N) fast scores, N >= k; delta: (B,) float32 tensor; rel: float.
        max_survivors: give up (None) when a row has more columns above its threshold
            (default ``MAX_SURVIVORS``).
    Returns:
        list of ((R,) int64 rows, (R, C) int64 candidate ids, by descending fast score), as
        :func:`candidate_groups` yields them (each row's list holds exactly the candidates that can
        be in its exact top k, not rounded up), or None: use :func:`candidate_groups`.
    """
    b = fast.shape[0]
    found = _survivors(fast, k, delta, rel)
    if found is None:
        return None
    r, c = found
    counts = torch.bincount(r, minlength=b)
    width = int(counts.max())
    if width > (MAX_SURVIVORS if max_survivors is None else max_survivors):
        return None
    pos = torch.arange(len(r), device=fast.device) - (counts.cumsum(0) - counts)[r]
    vals = torch.full((b, width), float("-inf"), device=fast.device)
    ids = torch.zeros((b, width), dtype=torch.int64, device=fast.device)
    vals[r, pos] = fast[r, c].float()
    ids[r, pos] = c
    vals, order = vals.sort(dim=1, descending=True)
    ids = ids.gather(1, order)
    widths = needed_widths(vals, k, delta, rel, width)[0]  # exactly the candidates that can win
    rows = torch.arange(b, device=fast.device)
    return [(rows[widths == w], ids[widths == w, :w]) for w in torch.unique(widths).tolist()]


def select_candidates(fast, k, margin, delta, rel=0.0):
    """The candidate groups of a block: :func:`threshold_candidates`, else :func:`candidate_groups`.

    Args and result as :func:`candidate_groups` (delta a (B,) tensor), as a list.
    """
    delta = torch.as_tensor(delta, dtype=torch.float32, device=fast.device).expand(fast.shape[0])
    if fast.shape[1] >= k:
        groups = threshold_candidates(fast, k, delta, rel)
        if groups is not None:
            return groups
    return list(candidate_groups(fast, k, margin, delta, rel))


__all__ = ["COLUMNS_PER_GROUP", "MAX_SURVIVORS", "needed_widths", "candidate_groups", "kth_lower_bound",
           "threshold_candidates", "select_candidates"]
