"""Exact re-ID retrieval metrics (CMC, mAP, mINP) from query blocks of distances, without a sort.

Protocol of fast-reid's ``evaluate_rank`` (Market-1501): gallery items with the query's pid *and*
camera are removed; a query with no remaining item of its pid is skipped. fast-reid argsorts the
dense (Q, G) distance matrix; :func:`rank_metrics` takes the distances of ``chunk`` queries to the
gallery at a time (from a callable: features -> distances is :mod:`.evaluator`'s ``evaluate``),
so memory is <~ 40 bytes x chunk x G, on the GPU when torch sees one, and nothing is fully sorted:
the metrics need only the rank of each valid positive among the valid items, which
:func:`.ranking.positive_ranks` finds from the few items not farther than a query's last positive
(see :mod:`.ranking`). Then, with
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
from canu_plugin.evaluation.ranking import float_order, positive_ranks, sortable_keys  # noqa: F401  (public here too)



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
