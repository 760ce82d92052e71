"""The Jaccard stage: ``s(i, j) = sum_l min(V_qe[i, l], V_qe[j, l])`` for every pair sharing a
column of ``V_qe``, turned into the distance ``1 - s / (2 - s)`` and kept sparse.

How (all vectorised, memory bounded by ``max_pairs``):

1. Column-major copy of ``V_qe`` (the inverted index of the research code).
2. For a block of rows, each stored entry (i, l) is paired with the entries of column l in rows
   j > i: the pair's contribution ``min(a_il, a_jl)`` and partner j are gathered with numpy
   (``repeat`` + ``arange`` over column segments). Each upper-triangle pair (i, j) receives every
   one of its shared columns in this block, so its sum is complete here.
3. Duplicate (i, j) contributions are summed by scipy's ``csr + csr`` on a non-canonical matrix,
   which uses a dense per-row accumulator (no sort): O(pairs).
4. Distances above the keep threshold are dropped right away; the kept upper triangle is mirrored
   and the diagonal added at the end.

Work: sum over columns l of |col l|^2 / 2 pairs, i.e. O(N * k1^2) for bounded neighbourhoods.
"""
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

try:  # scipy's C++ sparse kernels (stable for many releases); a public fallback is used without it
    from scipy.sparse import _sparsetools
except ImportError:  # pragma: no cover
    _sparsetools = None

DEFAULT_MAX_PAIRS = 1 << 21  # pairs materialised at once per worker (~25 bytes each: ~50 MB)
ZERO_TOL = 1e-6  # distances <= this are "zero" for MMT's eps rule (identical V_qe rows up to rounding)


def row_ids(indptr):
    """(nnz,) int32 row index of every stored entry of a CSR matrix with this indptr."""
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))


def to_distance(s):
    """Jaccard distance ``1 - s / (2 - s)`` clipped at 0, float32 (s: sums of minima)."""
    s = np.asarray(s, np.float64)
    d = 1.0 - s / (2.0 - s)
    np.maximum(d, 0.0, out=d)
    return d.astype(np.float32)


def _sum_duplicates(indptr, indices, data, n_cols):
    """CSR (len(indptr) - 1, n_cols) with duplicate (row, col) entries summed, indices unsorted.

    scipy's ``csr + csr`` on a non-canonical matrix accumulates each row in a dense buffer
    (O(nnz), no sort, unlike ``sum_duplicates``); its kernel is called directly to skip a copy.
    Entries summing to exactly 0 are dropped (all are > 0 here).
    """
    shape = (len(indptr) - 1, n_cols)
    if _sparsetools is None or not hasattr(_sparsetools, "csr_plus_csr"):  # pragma: no cover
        block = sp.csr_matrix((data, indices, indptr), shape=shape)
        return block + sp.csr_matrix(shape, dtype=data.dtype)
    indices = indices.astype(indptr.dtype, copy=False)
    out_ptr = np.empty_like(indptr)
    out_idx = np.empty(len(indices), indptr.dtype)
    out_val = np.empty(len(indices), data.dtype)
    empty_ptr = np.zeros_like(indptr)
    _sparsetools.csr_plus_csr(shape[0], shape[1], indptr, indices, data, empty_ptr, out_idx[:0],
                              out_val[:0], out_ptr, out_idx, out_val)
    nnz = int(out_ptr[-1])
    return sp.csr_matrix((out_val[:nnz], out_idx[:nnz], out_ptr), shape=shape)


class _Layout(NamedTuple):
    """Row- and column-major views of V_qe's entries used to enumerate the pairs."""
    n: int
    indptr: np.ndarray    # (N + 1,) row pointer of V_qe
    vals: np.ndarray      # (nnz,) float32 row-major values
    csc_rows: np.ndarray  # (nnz,) int32 rows in column-major order (ascending within a column)
    csc_vals: np.ndarray  # (nnz,) float32 values in column-major order
    first: np.ndarray     # (nnz,) int64 column-major position of each row-major entry's first partner
    ccnt: np.ndarray      # (nnz + 1,) int64 cumulative partner counts (partners further down the column)
    row_cum: np.ndarray   # (N + 1,) int64 pairs generated before each row


def _layout(vqe):
    nnz = vqe.nnz
    ids = sp.csr_matrix((np.arange(nnz, dtype=np.int64), vqe.indices, vqe.indptr), shape=vqe.shape).tocsc()
    pos = np.empty(nnz, np.int64)
    pos[ids.data] = np.arange(nnz)
    cnt = ids.indptr[vqe.indices.astype(np.int64) + 1] - pos - 1
    ccnt = np.concatenate([[0], np.cumsum(cnt)])
    return _Layout(vqe.shape[0], vqe.indptr, vqe.data.astype(np.float32), ids.indices.astype(np.int32, copy=False),
                   vqe.data[ids.data].astype(np.float32), pos + 1, ccnt, ccnt[vqe.indptr])


def _block_ranges(lay, max_pairs):
    """[(r0, r1)] row blocks holding at most ~max_pairs pairs each (a single row may exceed it)."""
    ranges, r0 = [], 0
    while r0 < lay.n:
        r1 = int(np.searchsorted(lay.row_cum, lay.row_cum[r0] + max_pairs, side="right")) - 1
        r1 = min(max(r1, r0 + 1), lay.n)
        ranges.append((r0, r1))
        r0 = r1
    return ranges


def _block_min_sums(lay, r0, r1):
    """(r1 - r0, N) float32 CSR, unsorted indices: s(i, j) for r0 <= i < r1 and every j > i sharing a
    column with i (exactly once each), or None when the block has no pair."""
    e0, e1 = lay.indptr[r0], lay.indptr[r1]
    total = int(lay.row_cum[r1] - lay.row_cum[r0])
    if total == 0:
        return None
    c = np.diff(lay.ccnt[e0:e1 + 1])
    idx_t = np.int32 if len(lay.csc_rows) < 2 ** 31 - 1 else np.int64
    p = np.repeat((lay.first[e0:e1] - (lay.ccnt[e0:e1] - lay.ccnt[e0])).astype(idx_t), c)
    p += np.arange(total, dtype=idx_t)  # column-major positions of the partners, segment by segment
    mins = np.take(lay.csc_vals, p, mode="clip")  # p is in range; "clip" skips the bounds check
    np.minimum(mins, np.repeat(lay.vals[e0:e1], c), out=mins)
    indptr = (lay.row_cum[r0:r1 + 1] - lay.row_cum[r0]).astype(idx_t)
    return _sum_duplicates(indptr, np.take(lay.csc_rows, p, mode="clip"), mins, lay.n)


def _kept_entries(r0, block, tau):
    """(rows, cols, dist) of a block's entries with distance <= tau (global row ids)."""
    if tau >= 1.0:
        keep = np.arange(block.nnz)
    else:  # d <= tau  <=>  s >= 2 (1 - tau) / (2 - tau); pre-select with a margin, then test exactly
        keep = np.flatnonzero(block.data >= 2.0 * (1.0 - tau) / (2.0 - tau) - 1e-6)
    dist = to_distance(block.data[keep])
    ok = dist <= tau
    keep, dist = keep[ok], dist[ok]
    rows = (np.searchsorted(block.indptr, keep, side="right") - 1 + r0).astype(np.int32)
    return rows, block.indices[keep].astype(np.int32, copy=False), dist


def _block_kept(lay, r0, r1, tau):
    """(rows, cols, dist) of block [r0, r1)'s upper-triangle pairs with distance <= tau."""
    block = _block_min_sums(lay, r0, r1)
    if block is None:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    return _kept_entries(r0, block, tau)


def _shrink(kept, keep_smallest, tau):
    """Lower the threshold to the ``keep_smallest``-th smallest distance above ``ZERO_TOL`` held
    (never raising it) and drop what lies above; returns (kept, tau)."""
    nonzero = np.concatenate([d[d > ZERO_TOL] for _, _, d in kept])
    if len(nonzero) > keep_smallest:
        tau = min(tau, float(np.partition(nonzero, keep_smallest - 1)[keep_smallest - 1]))
    return [(r[d <= tau], c[d <= tau], d[d <= tau]) for r, c, d in kept], tau


def symmetric_from_upper(rows, cols, dist, diag):
    """(N, N) float32 CSR with sorted indices = upper + upper^T + diag(diag), explicit zeros kept
    (scipy's ``+`` would drop them). ``rows`` ascending (block order), ``rows < cols``.

    Row i is laid out as [lower part (cols < i), the diagonal, upper part (cols > i)]: once the
    upper rows are sorted (C++), entries are scattered to their place without a global sort.
    """
    n = len(diag)
    up_ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    upper = sp.csr_matrix((dist, cols, up_ptr), shape=(n, n))
    upper.sort_indices()
    lower = upper.T.tocsr()  # sorted indices
    lo_cnt = np.diff(lower.indptr)
    indptr = lower.indptr + upper.indptr + np.arange(n + 1)
    indices = np.empty(indptr[-1], np.int32)
    data = np.empty(indptr[-1], np.float32)
    lo_rows, up_rows = row_ids(lower.indptr), row_ids(upper.indptr)
    dst = indptr[lo_rows] + (np.arange(lower.nnz) - lower.indptr[lo_rows])
    indices[dst], data[dst] = lower.indices, lower.data
    dst = indptr[:-1] + lo_cnt
    indices[dst], data[dst] = np.arange(n), diag
    dst = indptr[up_rows] + lo_cnt[up_rows] + 1 + (np.arange(upper.nnz) - upper.indptr[up_rows])
    indices[dst], data[dst] = upper.indices, upper.data
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def jaccard_from_vectors(vqe, max_dist=1.0, keep_smallest=0, max_pairs=DEFAULT_MAX_PAIRS, workers=1):
    """Sparse Jaccard distance between the rows of the query-expanded V.

    Args:
        vqe: (N, N) CSR, rows summing to 1.
        max_dist: off-diagonal distances above it are not stored (1.0: store every pair with a
            shared column, i.e. every distance < 1: the complete matrix).
        keep_smallest: if > 0, the threshold is lowered while scanning, keeping exactly the
            distances <= the ``keep_smallest``-th smallest upper-triangle distance above
            ``ZERO_TOL`` (what MMT's eps rule needs; all of them if there are fewer).
        max_pairs: at most this many pairs are materialised at once per worker (a single row may exceed it).
        workers: threads working on row blocks at once (numpy and scipy's kernels release the GIL);
            memory grows with it (one block each).
    Returns:
        (N, N) float32 symmetric CSR with sorted indices and the whole diagonal stored
        (1.0 for a row with no entries); absent entries mean "distance 1.0, or above the
        threshold".
    """
    vqe = vqe.tocsr()
    vqe.sort_indices()
    lay = _layout(vqe)
    kept, tau, n_kept = [], float(max_dist), 0
    workers = max(int(workers), 1)
    ranges = _block_ranges(lay, max_pairs)
    with ThreadPoolExecutor(workers) as pool:
        for w in range(0, len(ranges), workers):  # waves of `workers` blocks: bounded memory
            wave = list(pool.map(partial(_block_kept, lay, tau=tau), *zip(*ranges[w:w + workers])))
            kept += wave
            n_kept += sum(len(d) for _, _, d in wave)
            if 0 < keep_smallest < n_kept // 2:  # amortised: shrink when twice the target is held
                kept, tau = _shrink(kept, keep_smallest, tau)
                n_kept = sum(len(d) for _, _, d in kept)
    if keep_smallest > 0 and kept:  # final cut: the result does not depend on when shrinks happened
        kept, tau = _shrink(kept, keep_smallest, tau)
    empty = np.zeros(0, np.int32)
    rows, cols, dist = (np.concatenate(a) for a in zip(*kept)) if kept else (empty, empty, np.zeros(0, np.float32))
    diag = to_distance(np.asarray(vqe.sum(axis=1)).ravel())
    return symmetric_from_upper(rows, cols, dist, diag)


__all__ = ["DEFAULT_MAX_PAIRS", "ZERO_TOL", "row_ids", "to_distance",
           "symmetric_from_upper", "jaccard_from_vectors"]
