"""The rank of each query's valid positives among its valid gallery items, from a block of distances.

Only items not farther than a query's last positive can precede one, usually a few per cent of the
gallery. They are flagged with one comparison and located among the block's positives
(:func:`_ranks_sparse`): each row's values are cut into ``2^ROW_BIN_BITS`` bins by their float order
between its nearest and farthest positive, and a table gives, per bin, how many positives precede
it; only items whose bin also holds a positive (a few per cent) are placed exactly, by one
``searchsorted`` in the sorted (row, value, column) keys of the positives. Items are then counted
per position and the query's own pid's items (positives, same-camera junk) subtracted the same way.
When the flagged items are most of the block, every negative is bucketed per row instead
(:func:`_ranks_dense`). Ties are ordered by gallery index: every comparison is on (value, column).
"""
import numpy as np
import torch

_INT64_MAX = torch.iinfo(torch.int64).max
SPARSE_MAX_FRACTION = 0.25  # count only the items before the last positive when at most this fraction of a block
ROW_BIN_BITS = 9            # 512 bins per row between its nearest and farthest positive (float order)


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


def _row_keys(rows, order, cols, col_bits):
    """int64 keys increasing in (row, value, col): row above bit 32 + col_bits, then the value's
    order (:func:`float_order` codes, ``order``, changed in place), then the column."""
    order <<= col_bits
    order |= cols
    order |= rows << (32 + col_bits)
    return order


class _RowBins:
    """Where an item of a block lies among its row's sorted positives: by table where it can be.

    Row r's float-order codes from its nearest positive's (``low[r]``) up are cut into bins of
    ``2^shift[r]`` codes, at most ``2^ROW_BIN_BITS`` of them up to its farthest positive; bin 0 holds
    everything nearer than the nearest positive. The codes are exact integers, so an item's bin is
    below (above) a positive's bin only when the item is nearer (farther): ``below[bin]`` positives
    precede it, unless its bin holds a positive (``mixed``), where its (row, value, column) key is
    searched among the sorted keys ``pos``.

    Args:
        pr, pos_order, pos_cols: (P,) row, float-order code and column of the block's valid positives.
        num, col_bits: the block's rows and the bits of a column index.
    """

    def __init__(self, pr, pos_order, pos_cols, num, col_bits):
        dev, self.col_bits = pr.device, col_bits
        self.nb = (1 << ROW_BIN_BITS) + 1
        self.low = torch.zeros(num, dtype=torch.int64, device=dev).scatter_reduce_(0, pr, pos_order, "amin",
                                                                                    include_self=False)
        high = self.low.clone().scatter_reduce_(0, pr, pos_order, "amax", include_self=False)
        bits = torch.frexp((high - self.low).double())[1].to(torch.int64)  # bit length of the span
        self.shift = (bits - ROW_BIN_BITS).clamp_(min=0)
        npos = torch.bincount(pr, minlength=num)
        ceiling = ((torch.arange(num, device=dev) + 1) << (32 + col_bits)) - 1  # above every key of its row
        self.pos = torch.cat([_row_keys(pr, pos_order.clone(), pos_cols, col_bits), ceiling]).sort().values
        self.first = (npos + 1).cumsum(0) - (npos + 1)  # row r's positions in pos: first[r] .. + npos[r]
        per_bin = torch.bincount(self._bins(pr, pos_order), minlength=num * self.nb)
        self.mixed = per_bin > 0
        table = per_bin.view(num, self.nb)
        self.below = (table.cumsum(1) - table + self.first[:, None]).view(-1)

    def _bins(self, rows, order):
        """(N,) int64 flat (row, bin) indices of items with the given rows and float-order codes."""
        b = (order - self.low.index_select(0, rows)) >> self.shift.index_select(0, rows)
        b.add_(1).clamp_(0, self.nb - 1)  # nearer than the nearest positive: bin 0; beyond the span: the last
        b += rows * self.nb
        return b

    def positions(self, rows, values, cols):
        """(N,) int64: where each item (row, float32 value, column) falls in ``pos``, i.e. the
        first[row] + the number of its row's positives before it."""
        order = float_order(values)
        b = self._bins(rows, order)
        at = self.below.index_select(0, b)
        m = _flagged(self.mixed.index_select(0, b))
        if len(m):
            keys = _row_keys(rows.index_select(0, m), order.index_select(0, m), cols.index_select(0, m), self.col_bits)
            at.scatter_(0, m, torch.searchsorted(self.pos, keys))
        return at


def _ranks_sparse(dist, flat, last, gidx, same, good, pos_dist):
    """Ranks from the items not farther than each query's last positive (see the module's doc):
    each is located among its row's positives (:class:`_RowBins`) and counted per position; the
    query's own pid's items (positives, same-camera junk) are located the same way and subtracted.

    Args:
        dist: (B, G) float32; flat: (F,) int64 row-major indices (row * G + col) of the items with
        dist <= the row's last positive; last: (B,) that distance; gidx, same, good, pos_dist:
        (B, W) from :func:`_block_positives`.
    Returns:
        (B, W) int64: entry [b, k] = 0-based rank of query b's k-th valid positive (k < npos[b]).
    """
    num, width = gidx.shape
    col_bits = max(int(dist.shape[1] - 1).bit_length(), 1)
    pr, pk = good.nonzero(as_tuple=True)
    where = _RowBins(pr, float_order(pos_dist[pr, pk]), gidx[pr, pk], num, col_bits)
    r, c = _row_col(flat, dist.shape[1])
    size = len(where.pos)
    hist = torch.bincount(where.positions(r, dist.reshape(-1).index_select(0, flat), c), minlength=size)
    sr, sk = (same & (pos_dist <= last[:, None])).nonzero(as_tuple=True)
    hist -= torch.bincount(where.positions(sr, pos_dist[sr, sk], gidx[sr, sk]), minlength=size)
    before = torch.cat([hist.new_zeros(1), hist.cumsum(0)])  # before[p] = items at positions < p
    slot = torch.arange(width, device=dist.device)
    at = (where.first[:, None] + slot + 1).clamp_(max=size)
    return before[at] - before[where.first][:, None] + slot


def _flagged(mask):
    """(F,) int64 row-major flat indices of the True entries of a (B, G) bool tensor; on the CPU by
    numpy's ``flatnonzero`` (~4x torch's ``nonzero`` there)."""
    if mask.device.type != "cpu":
        return mask.reshape(-1).nonzero().view(-1)
    return torch.from_numpy(np.flatnonzero(mask.numpy()))


def _row_col(flat, num_cols):
    """(rows, cols) int64 of row-major flat indices into a matrix of ``num_cols`` columns."""
    if flat.device.type != "cpu":
        rows = torch.div(flat, num_cols, rounding_mode="floor")
        return rows, flat - rows * num_cols
    rows, cols = np.divmod(flat.numpy(), num_cols)
    return torch.from_numpy(rows), torch.from_numpy(cols)


def positive_ranks(dist, lab, start, stop):
    """0-based ranks of each query's valid positives among its valid gallery items (counting the
    items not farther than the last positive when they are at most ``SPARSE_MAX_FRACTION`` of the
    block, else bucketing every item).

    Args:
        dist: (B, G) float32 distances of queries ``start:stop`` to the whole gallery.
        lab: the block's labels (:class:`.metrics.LabelIndex`: q_pid, q_cam, g_pid, g_cam, count, start, order).
    Returns:
        (ranks, npos): (B, W) int64, ranks[b, k] = rank of the k-th nearest valid positive of
        query b (entries k >= npos[b] are meaningless), and (B,) int64 valid positives per query.
    """
    gidx, same, good, pos_dist = _block_positives(dist, lab, start, stop)
    npos = good.sum(1)
    last = pos_dist.masked_fill(~good, float("-inf")).amax(1)
    flagged = dist <= last[:, None]
    if int(dist.shape[0]).bit_length() + 32 + int(dist.shape[1] - 1).bit_length() <= 63:
        flat = _flagged(flagged)
        if len(flat) <= SPARSE_MAX_FRACTION * flagged.numel():
            return _ranks_sparse(dist, flat, last, gidx, same, good, pos_dist), npos
    flagged &= lab.g_pid[None, :] != lab.q_pid[start:stop, None]  # the negatives (another person)
    return _ranks_dense(dist, flagged, gidx, good, pos_dist), npos


__all__ = ["SPARSE_MAX_FRACTION", "ROW_BIN_BITS", "float_order", "sortable_keys", "positive_ranks"]
