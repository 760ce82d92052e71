"""Exact re-ID retrieval metrics (CMC, mAP, mINP) from query blocks of distances, without a sort.

Protocol of fast-reid's ``evaluate_rank`` (Market-1501): gallery items with the query's pid *and*
camera are removed; a query with no remaining item of its pid is skipped. fast-reid argsorts the
dense (Q, G) distance matrix; :func:`rank_metrics` takes the distances of ``chunk`` queries to the
gallery at a time (from a callable: features -> distances is :mod:`.evaluator`'s ``evaluate``),
so memory is <~ 40 bytes x chunk x G, on the GPU when torch sees one, and nothing is fully sorted:
the metrics need only the rank of each valid positive among the valid items. Only items not
farther than a query's last positive can precede one; each is located among the block's sorted
positive keys with one ``searchsorted`` and counted per (query, positives before it), the
query's own pid's items subtracted the same way (:func:`_ranks_sparse`); when they are most of
the block, every negative is bucketed per row instead (:func:`_ranks_dense`). Then, with
rank_k the 0-based rank of the k-th positive: AP = mean_k (k + 1) / (rank_k + 1),
CMC@r = [rank_0 <= r], INP = npos / (rank_last + 1), as fast-reid reads them off its sorted rows.

Tie rule: equal distances are ordered by gallery index (a *stable* sort), via int64 keys of
(distance bits, index). fast-reid uses ``np.argsort``'s default, unstable sort (SIMD-dispatched
in numpy 2: the order of ties depends on the CPU), in its python and cython paths alike; float32
distances of thousands of items do contain exact ties. Without ties the results equal fast-reid's;
with ties they equal its python path with a stable argsort. Distances are evaluated as float32
(fast-reid's ``build_dist`` output; its cython path casts to float32 too).
"""
import contextlib

import numpy as np
import torch

from canu_plugin.errors import CanuError

_INT64_MAX = torch.iinfo(torch.int64).max
SPARSE_MAX_FRACTION = 0.25  # count only the items before the last positive when at most this fraction of a block


def resolve_device(device=None):
    """torch.device to compute on: ``device`` if given, else CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CanuError(f"evaluation device {device} asked for but torch sees no CUDA device: "
                        "set TEST.CANU.DEVICE to 'auto' or 'cpu'")
    return device


def _labels(values, n, name):
    """(n,) numpy array of labels (any dtype numpy can compare), or CanuError."""
    arr = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    if arr.ndim != 1 or len(arr) != n:
        raise CanuError(f"{name} has shape {arr.shape} but there are {n} rows (features / distances): "
                        "pass one label per row (query labels for the queries, gallery for the gallery)")
    return arr


class LabelIndex:
    """Labels as int64 codes on ``device`` (equal code = equal label): q_pid, q_cam (Q,), g_pid,
    g_cam (G,); the gallery grouped by pid: order (G,) indices sorted by pid code, count (K,) and
    start (K,) each pid's run length and offset in ``order``."""

    def __init__(self, q_pids, g_pids, q_camids, g_camids, num_query, num_gallery, device):
        q_pids, q_cams = _labels(q_pids, num_query, "q_pids"), _labels(q_camids, num_query, "q_camids")
        g_pids, g_cams = _labels(g_pids, num_gallery, "g_pids"), _labels(g_camids, num_gallery, "g_camids")
        pid_codes = np.unique(np.concatenate([q_pids, g_pids]), return_inverse=True)[1].ravel()
        cam_codes = np.unique(np.concatenate([q_cams, g_cams]), return_inverse=True)[1].ravel()
        g_code = pid_codes[num_query:]
        count = np.bincount(g_code, minlength=int(pid_codes.max()) + 1)

        def put(a):
            return torch.as_tensor(np.ascontiguousarray(a, dtype=np.int64), device=device)

        self.q_pid, self.g_pid = put(pid_codes[:num_query]), put(g_code)
        self.q_cam, self.g_cam = put(cam_codes[:num_query]), put(cam_codes[num_query:])
        self.count, self.start = put(count), put(np.cumsum(count) - count)
        self.order = put(np.argsort(g_code, kind="stable"))


def float_order(values):
    """(...) int64 codes in [0, 2^32) that order float32 values: equal iff equal, smaller iff smaller.

    The IEEE bits as int32, with the magnitude bits of negative numbers flipped, shifted by 2^31;
    ``-0.0`` is first made ``+0.0`` (they compare equal). Values must not be NaN.
    """
    bits = (values + 0.0).contiguous().view(torch.int32)
    key = bits >> 31
    key &= 0x7FFFFFFF
    key ^= bits
    out = key.to(torch.int64)
    out += 1 << 31
    return out


def sortable_keys(values, cols, num_gallery):
    """(...) int64 keys strictly increasing in (value, col) for float32 values and int64 cols < G."""
    out = float_order(values)
    out *= num_gallery
    out += cols
    return out


def _block_positives(dist, lab, start, stop):
    """The gallery items of each query's pid, queries start:stop: (gidx, same, good, pos_dist),
    each (B, W), W = the largest gallery count of a query pid in the block; ``same`` masks the real
    entries, ``good`` those of another camera (the valid positives)."""
    code, cam = lab.q_pid[start:stop], lab.q_cam[start:stop]
    count = lab.count[code]
    slot = torch.arange(max(int(count.max()), 1), device=dist.device)
    gidx = lab.order[(lab.start[code][:, None] + slot).clamp_(max=dist.shape[1] - 1)]
    same = slot < count[:, None]
    return gidx, same, same & (lab.g_cam[gidx] != cam[:, None]), dist.gather(1, gidx)


def _ranks_dense(dist, neg, gidx, good, pos_dist):
    """Ranks by bucketing every flagged negative among the sorted positive keys (searchsorted) and
    counting per bucket. Same arguments and result as :func:`_ranks_sparse`."""
    num, num_gallery = dist.shape
    width = gidx.shape[1]
    pos_keys = sortable_keys(pos_dist, gidx, num_gallery).masked_fill_(~good, _INT64_MAX).sort(dim=1).values
    keys = sortable_keys(dist, torch.arange(num_gallery, device=dist.device), num_gallery)
    bucket = torch.searchsorted(pos_keys, keys.masked_fill_(~neg, _INT64_MAX))  # positives before it
    del keys
    bins = width + 1  # an unflagged item (INT64_MAX) lands in bin npos: it precedes no positive
    bucket += (torch.arange(num, device=dist.device) * bins)[:, None]
    hist = torch.bincount(bucket.view(-1), minlength=num * bins).view(num, bins)
    return hist[:, :width].cumsum(1) + torch.arange(width, device=dist.device)


def _row_keys(rows, values, cols, col_bits):
    """int64 keys increasing in (row, value, col): row above bit 32 + col_bits, then the value's
    order (:func:`float_order`), then the column."""
    key = float_order(values)
    key <<= col_bits
    key |= cols
    key |= rows << (32 + col_bits)
    return key


def _ranks_sparse(dist, flagged, last, gidx, same, good, pos_dist):
    """Ranks from the items not farther than each query's last positive: each is located among
    its row's sorted positives (one search in the sorted (row, value, col) keys of the block's
    positives) and counted per (row, positives before it); the query's own pid's items (positives,
    same-camera junk) are located the same way and subtracted. No sort of the gallery.

    Args:
        dist: (B, G) float32; flagged: ((F,) rows, (F,) columns) of the items with dist <= the
        row's last positive; last: (B,) that distance; gidx, same, good, pos_dist: (B, W) from
        :func:`_block_positives`.
    Returns:
        (B, W) int64: entry [b, k] = 0-based rank of query b's k-th valid positive (k < npos[b]).
    """
    num, width = gidx.shape
    col_bits = max(int(dist.shape[1] - 1).bit_length(), 1)
    pr, pk = good.nonzero(as_tuple=True)
    pos = _row_keys(pr, pos_dist[pr, pk], gidx[pr, pk], col_bits).sort().values  # rows in order
    npos = good.sum(1)
    offset = torch.arange(num, device=dist.device) * (width + 1) - (npos.cumsum(0) - npos)  # row's bins - its first positive

    def located(rows, values, cols):  # (row, positives of the row before it), as one bin index
        before = torch.searchsorted(pos, _row_keys(rows, values, cols, col_bits))
        return before.add_(offset[rows])

    nr, nc = flagged
    values = dist.view(-1).index_select(0, nr * dist.shape[1] + nc)
    hist = torch.bincount(located(nr, values, nc), minlength=num * (width + 1))
    sr, sk = (same & (pos_dist <= last[:, None])).nonzero(as_tuple=True)
    hist -= torch.bincount(located(sr, pos_dist[sr, sk], gidx[sr, sk]), minlength=num * (width + 1))
    hist = hist.view(num, width + 1)
    return hist[:, :width].cumsum(1) + torch.arange(width, device=dist.device)


def _nonzero(mask):
    """((F,) rows, (F,) cols) int64 of the True entries of a (B, G) bool tensor, row-major; on the
    CPU by numpy's ``flatnonzero`` (~4x torch's ``nonzero`` there)."""
    if mask.device.type != "cpu":
        return mask.nonzero(as_tuple=True)
    rows, cols = np.divmod(np.flatnonzero(mask.numpy()), mask.shape[1])
    return torch.from_numpy(rows), torch.from_numpy(cols)


def positive_ranks(dist, lab, start, stop):
    """0-based ranks of each query's valid positives among its valid gallery items (counting the
    items not farther than the last positive when they are at most ``SPARSE_MAX_FRACTION`` of the
    block, else bucketing every item).

    Args:
        dist: (B, G) float32 distances of queries ``start:stop`` to the whole gallery.
        lab: the :class:`LabelIndex`.
    Returns:
        (ranks, npos): (B, W) int64, ranks[b, k] = rank of the k-th nearest valid positive of
        query b (entries k >= npos[b] are meaningless), and (B,) int64 valid positives per query.
    """
    gidx, same, good, pos_dist = _block_positives(dist, lab, start, stop)
    last = pos_dist.masked_fill(~good, float("-inf")).amax(1)
    flagged = dist <= last[:, None]
    if int(dist.shape[0] - 1).bit_length() + 32 + int(dist.shape[1] - 1).bit_length() <= 63:
        items = _nonzero(flagged)
        if len(items[0]) <= SPARSE_MAX_FRACTION * flagged.numel():
            return _ranks_sparse(dist, items, last, gidx, same, good, pos_dist), good.sum(1)
    flagged &= lab.g_pid[None, :] != lab.q_pid[start:stop, None]  # the negatives (another person)
    return _ranks_dense(dist, flagged, gidx, good, pos_dist), good.sum(1)


def query_scores(ranks, npos):
    """(first, ap, inp), each (B,): int64 rank of the nearest positive, float64 AP and INP, from
    :func:`positive_ranks`'s (B, W) ranks and (B,) npos; rows with npos == 0 are meaningless."""
    slot = torch.arange(ranks.shape[1], device=ranks.device)
    prec = (slot + 1).double() / (ranks + 1).double()
    prec = prec.masked_fill_(slot[None, :] >= npos[:, None], 0.0)
    n = npos.clamp(min=1)
    ap = prec.sum(1) / n.double()
    last = ranks.gather(1, (n - 1)[:, None]).squeeze(1)
    inp = npos.double() / (last + 1).double()
    return ranks[:, 0], ap, inp


def trapezoid_ap(ranks, npos):
    """(B,) float64 AP as the MATLAB ``compute_AP`` of MARS-evaluation (and Market-1501's) computes
    it: the precision-recall curve integrated with the trapezoid rule. At the k-th positive (rank
    r_k among the valid items) recall rises by 1 / npos, over the mean of the precision just before
    it (k / r_k; 1 when r_k = 0) and at it ((k + 1) / (r_k + 1)). Arguments as :func:`query_scores`."""
    slot = torch.arange(ranks.shape[1], device=ranks.device)
    r = ranks.double()
    before = torch.where(ranks > 0, slot.double() / r.clamp(min=1), torch.ones_like(r))
    terms = ((slot + 1).double() / (r + 1) + before) / 2
    terms = terms.masked_fill_(slot[None, :] >= npos[:, None], 0.0)
    return terms.sum(1) / npos.clamp(min=1).double()


def _check_block(dist, start, stop, num_gallery):
    """CanuError unless dist is a NaN-free (stop - start, G) block."""
    if tuple(dist.shape) != (stop - start, num_gallery):
        raise CanuError(f"distance block for queries {start}:{stop} has shape {tuple(dist.shape)}, "
                        f"expected {(stop - start, num_gallery)}: the distance matrix must be (Q, G)")
    if bool(torch.isfinite(dist.sum())):  # one vectorised pass: NaN anywhere makes the sum NaN
        return
    nan_rows = torch.isnan(dist).any(1).nonzero().view(-1)
    if len(nan_rows):
        row = start + int(nan_rows[0])
        raise CanuError(f"NaN distance for query {row}: the features or the distance matrix contain "
                        "NaN/inf (diverged model?); check the model's output or restart from a good checkpoint")


def _summarise(firsts, aps, inps, valid, max_rank, num_gallery, traps):
    """The result dict from the per-valid-query arrays (see :func:`rank_metrics`)."""
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise CanuError(f"none of the {len(valid)} queries has a gallery image of its person from "
                        "another camera, so no rank metric is defined: check that query and gallery "
                        "come from the same test set (DATASETS.TESTS) and that the pids/camids are right")
    max_rank = min(int(max_rank), num_gallery)  # as fast-reid: curve length capped by the gallery
    first = np.concatenate(firsts)
    hits = np.cumsum(np.bincount(np.minimum(first, max_rank), minlength=max_rank + 1)[:max_rank])
    cmc = hits.astype(np.float32) / np.float32(num_valid)
    all_ap, all_inp, all_trap = np.concatenate(aps), np.concatenate(inps), np.concatenate(traps)
    return {"cmc": cmc, "mAP": float(np.mean(all_ap)), "mINP": float(np.mean(all_inp)),
            "mAP_trapezoid": float(np.mean(all_trap)), "num_valid": num_valid, "num_query": len(valid),
            "valid": valid, "all_AP": all_ap, "all_INP": all_inp, "all_AP_trapezoid": all_trap, "first_rank": first}


@contextlib.contextmanager
def _cpu_threads(device, threads):
    """Run the block's ranking ops with ``threads`` CPU threads (0: torch's setting), then restore."""
    old = torch.get_num_threads()
    change = device.type == "cpu" and int(threads) > 0 and int(threads) != old
    if change:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(old)


def rank_metrics(dist_block, q_pids, g_pids, q_camids, g_camids, *, max_rank=50, chunk=256, device=None,
                 threads=1):
    """CMC / mAP / mINP from a function giving distance blocks (the engine of ``evaluator.evaluate``).

    Args:
        dist_block: callable (start, stop) -> (stop - start, G) float32 distances on ``device`` of
            queries start:stop to the gallery; q_pids, q_camids (Q,), g_pids, g_camids (G,) labels.
        max_rank: CMC length (capped at G, as fast-reid); chunk: queries per block.
        threads: CPU threads for the ranking ops (0: torch's setting; the distance blocks always use
            torch's). Many small memory-bound ops gain little from threads and stall badly when
            the cores are busy (OpenMP barriers), so 1 is the default.
    Returns:
        dict: cmc (max_rank,) float32; mAP, mINP floats in [0, 1]; mAP_trapezoid (the MATLAB codes'
        AP, :func:`trapezoid_ap`); num_valid, num_query ints; valid (Q,) bool; all_AP, all_INP,
        all_AP_trapezoid (num_valid,) float64 and first_rank (num_valid,) int64 (0-based rank of
        the first true match) of the valid queries, in query order.
    """
    if int(chunk) < 1 or int(max_rank) < 1:
        raise CanuError(f"chunk={chunk} and max_rank={max_rank} must be >= 1 (TEST.CANU.QUERY_CHUNK)")
    num_query, num_gallery = len(q_pids), len(g_pids)
    if num_query == 0 or num_gallery == 0:
        raise CanuError(f"cannot evaluate with {num_query} queries and {num_gallery} gallery images: "
                        "the test set's query or gallery is empty; check the dataset folder (DATASETS.TESTS)")
    lab = LabelIndex(q_pids, g_pids, q_camids, g_camids, num_query, num_gallery, resolve_device(device))
    firsts, aps, inps, traps, valid = [], [], [], [], np.zeros(num_query, bool)
    for start in range(0, num_query, int(chunk)):
        stop = min(start + int(chunk), num_query)
        dist = dist_block(start, stop)
        with _cpu_threads(dist.device, threads):
            _check_block(dist, start, stop, num_gallery)
            ranks, npos = positive_ranks(dist, lab, start, stop)
            del dist
            first, ap, inp = query_scores(ranks, npos)
            trap = trapezoid_ap(ranks, npos)
        ok = npos > 0
        valid[start:stop] = ok.cpu().numpy()
        firsts.append(first[ok].cpu().numpy())
        aps.append(ap[ok].cpu().numpy())
        inps.append(inp[ok].cpu().numpy())
        traps.append(trap[ok].cpu().numpy())
    return _summarise(firsts, aps, inps, valid, max_rank, num_gallery, traps)


def evaluate_dist(dist, q_pids, g_pids, q_camids, g_camids, *, max_rank=50, chunk=256, device=None, threads=1):
    """The metrics of a (Q, G) distance matrix (array, memmap or tensor; read ``chunk`` rows at
    a time, as float32). Returns the dict of :func:`rank_metrics`."""
    device = resolve_device(device)
    dist = dist if isinstance(dist, torch.Tensor) else np.asarray(dist)
    if dist.ndim != 2 or tuple(dist.shape) != (len(q_pids), len(g_pids)):
        raise CanuError(f"distance matrix has shape {tuple(dist.shape)} but there are {len(q_pids)} query and "
                        f"{len(g_pids)} gallery labels: it must be (Q, G), one row per query")

    def block(s, e):
        rows = dist[s:e]
        rows = rows if isinstance(rows, torch.Tensor) else torch.from_numpy(np.asarray(rows))
        return rows.to(device=device, dtype=torch.float32)

    return rank_metrics(block, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, chunk=chunk,
                        device=device, threads=threads)


__all__ = ["LabelIndex", "resolve_device", "float_order", "sortable_keys", "positive_ranks", "query_scores",
           "trapezoid_ap", "rank_metrics", "evaluate_dist"]
