"""Query-to-gallery distance blocks for the evaluator, with fast-reid's ``build_dist`` semantics.

The distances are float32 products of the features: cosine ``1 - <q/|q|, g/|g|>`` or squared
euclidean ``|q|^2 + |g|^2 - 2 <q, g>``. Their product is most of the evaluation's time, so it
is computed

* by the machine's fastest float32 product: on the CPU, torch's (MKL / oneDNN) and numpy's
  (OpenBLAS in the PyPI wheels) run at different rates on different CPUs (either can be 1.5x the
  other), so ``product="auto"`` times each on its first real rows (:meth:`FeatureBlocks._trial`) and
  keeps the faster, once per process (:func:`product_backend`; a sample's small products would time
  both too slowly and too noisily to tell them apart); CUDA always uses torch's;
* in blocks of up to ``PRODUCT_BYTES`` of distances, written into one buffer that every block
  reuses (a fresh block would fault in its pages each time; each block switches between the
  product's threads and the ranking's, which costs a little), and handed out as views of
  ``chunk`` rows (the ranking's blocks).

Plain IEEE float32 products (no TF32), as fast-reid's. With torch's product in one block the
distances are fast-reid's bit for bit (cosine as 1 + (-q) g^T of unit rows: the negation is exact).
numpy's product takes the raw gallery and scales each column by 1 / |g| afterwards (no unit copy of
the gallery), and its BLAS, or torch's on blocks of another height, may sum in another order, so a
few distances are a float32 ulp away and metrics agree to ~1e-7. Ties are ordered by gallery index
either way.
"""
import logging
import time

import numpy as np
import torch
import torch.nn.functional as F

from canu_plugin.clustering.knn_torch import strict_matmul
from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)

METRICS = ("cosine", "euclidean")
PRODUCTS = ("auto", "torch", "numpy")
PRODUCT_BYTES = 256 << 20   # distances computed at once (one reused buffer)
MIN_GFLOP = 20.0            # below 2 Q G D / 1e9 = this, "auto" does not time: torch's product runs
TRIAL_ROWS, TRIAL_PIECES = 128, 2  # "auto": times each product on 2 pieces of 128 real rows, keeps the best of each
WARM_ROWS, WARM_COLS = 16, 1024  # "auto": the untimed product before each trial
MARGIN = 0.05               # numpy's product is taken when > 5 % faster in the trials (else torch's, fast-reid's own)
_CHOICE = {}                # (D, threads) -> backend, per process


def _blas_limit():
    """A context that gives numpy's BLAS torch's thread count (no oversubscription beside torch's
    ``canu-bench --jobs`` setting)."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=torch.get_num_threads(), user_api="blas")


def _numpy_mm(a, b, out):
    """out[:] = a @ b.T by numpy's BLAS; a (B, D), b (G, D), out (B, G) float32 CPU tensors."""
    with _blas_limit():
        np.matmul(a.numpy(), b.numpy().T, out=out.numpy())


def _torch_mm(a, b, out):
    """out[:] = a @ b.T by torch, plain float32."""
    with strict_matmul():
        torch.mm(a, b.t(), out=out)


_MM = {"torch": _torch_mm, "numpy": _numpy_mm}


def product_into(name, a, b, out):
    """out[:] = a @ b.T by the float32 product ``name`` ("torch" or "numpy", as the evaluator runs it);
    a (B, D), b (G, D), out (B, G) float32 tensors (numpy: on the CPU)."""
    _MM[name](a, b, out)


def product_backend(q, g, product="auto"):
    """The float32 product that computes ``q @ g.T``: "torch", "numpy", or None (to be measured).

    Args:
        q: (Q, D), g: (G, D) float32 tensors on one device; product: one of ``PRODUCTS``.
    Returns:
        "torch" on CUDA, for products under ``MIN_GFLOP`` and when asked for; "numpy" when asked
        for (CPU only); for "auto" on the CPU the choice measured earlier in this process for
        this feature dim and thread count, else None: :class:`FeatureBlocks` then times each product
        on its first real rows (:meth:`FeatureBlocks._trial`) and keeps the faster.
    """
    if product not in PRODUCTS:
        raise CanuError(f"TEST.CANU.PRODUCT={product!r} is not one of {PRODUCTS}")
    if q.device.type != "cpu":
        if product == "numpy":
            raise CanuError(f"TEST.CANU.PRODUCT='numpy' computes on the CPU, but the features are on {q.device}: "
                            "set TEST.CANU.PRODUCT to 'auto' or 'torch', or TEST.CANU.DEVICE to 'cpu'")
        return "torch"
    if product != "auto":
        return product
    if 2.0 * len(q) * len(g) * q.shape[1] / 1e9 < MIN_GFLOP:
        return "torch"
    return _CHOICE.get((q.shape[1], torch.get_num_threads()))


def _chosen(seconds_per_row, dim):
    """Keep the faster product (numpy only when ``MARGIN`` faster), remember it, log the trial."""
    t, n = seconds_per_row["torch"], seconds_per_row["numpy"]
    choice = "numpy" if n < (1.0 - MARGIN) * t else "torch"
    _CHOICE[(dim, torch.get_num_threads())] = choice
    logger.info("evaluation distances: %s's float32 product (first rows: torch %.2f ms, numpy %.2f ms a query)",
                choice, 1e3 * t, 1e3 * n)
    return choice


def _warm_up(name, q, g):
    """An untimed small product by ``name`` (``WARM_ROWS`` x ``WARM_COLS``): its threads and buffers
    start before its trial is timed."""
    out = torch.empty((min(len(q), WARM_ROWS), min(len(g), WARM_COLS)), dtype=torch.float32, device=q.device)
    _MM[name](q[:out.shape[0]], g[:out.shape[1]], out)


def duplicate_rows(g, lead=64):
    """Rows of ``g`` equal to an earlier row, and that row: (dst, src) (K,) int64 tensors, or None.

    A BLAS rounds a product's columns by their position, so two equal gallery rows can get distances
    a float32 ulp apart, which breaks their tie (float64 distances tie them, and the ranking orders
    ties by gallery index). Candidates share an exact integer hash of their first ``lead`` values
    (-0.0 as +0.0); their equality is then checked on the whole row.
    """
    bits = (g[:, :lead] + 0.0).view(torch.int32).long()
    odd = torch.randint(1, 1 << 62, (bits.shape[1],), generator=torch.Generator().manual_seed(0)) * 2 + 1
    _, inv, counts = torch.unique((bits * odd.to(g.device)).sum(1), return_inverse=True, return_counts=True)
    cand = (counts[inv] > 1).nonzero().view(-1)
    if len(cand) == 0:
        return None
    inv = torch.unique(g[cand] + 0.0, dim=0, return_inverse=True)[1]
    first = torch.full((int(inv.max()) + 1,), len(g), dtype=torch.int64, device=g.device)
    src = first.scatter_reduce_(0, inv, cand, "amin")[inv]
    keep = src != cand
    return (cand[keep], src[keep]) if bool(keep.any()) else None


class FeatureBlocks:
    """Distance blocks of query rows to the gallery: ``blocks(start, stop)`` -> (stop - start, G)
    float32 tensor (the callable :func:`.metrics.rank_metrics` takes).

    Rows are computed ``PRODUCT_BYTES`` at a time into one buffer, a whole number of the first
    call's rows (the ranking's chunk, so that no later chunk straddles two fills); a block is a view
    of it, valid until the next call (the caller may change it in place). Calls of that size in
    increasing, non-overlapping order (the ranking's) compute each row once.

    Args:
        q: (Q, D), g: (G, D) float32 tensors on the compute device.
        metric: "cosine" or "euclidean" (squared); product: one of ``PRODUCTS``
            (:func:`product_backend`).
    """

    def __init__(self, q, g, metric="cosine", product="auto"):
        if metric not in METRICS:
            raise CanuError(f"unknown metric {metric!r}: set TEST.METRIC to one of {METRICS}")
        self.metric, self.g_unit, self.g_scale = metric, None, None
        if metric == "cosine":
            # -q: the product is then -<q, g> exactly (rounding is symmetric), and 1 + it = fast-reid's 1 - mm, one pass
            self.q, self.g = F.normalize(q, dim=1).neg_(), g
        else:
            self.q, self.g = q, g
            self.q_sq, self.g_sq = q.pow(2).sum(1), g.pow(2).sum(1)
        self.dups = duplicate_rows(self.g) if len(self.g) else None
        self.product = product_backend(self.q, self.g, product)
        self.rows = max(1, min(len(q), PRODUCT_BYTES // (4 * max(1, len(g)))))
        self.buf, self.span, self.trials = None, (0, 0), {}

    def _cosine_gallery(self, name):
        """The gallery for a cosine product: torch's once chosen (or asked for) gets unit rows, as
        fast-reid's (bit for bit); numpy's and the trials get the raw rows, the product scaled by
        1 / |g| per column afterwards (no unit copy of the gallery to write: an ulp here and there).
        Returns (gallery (G, D), per-column scale (G,) or None)."""
        if name == "torch" and self.product == "torch":
            if self.g_unit is None:
                self.g_unit = F.normalize(self.g, dim=1)
            return self.g_unit, None
        if self.g_scale is None:
            self.g_scale = torch.linalg.vector_norm(self.g, dim=1).clamp_min_(1e-12).reciprocal_()
        return self.g, self.g_scale

    def _compute(self, start, stop, out, name):
        """Write the distances of query rows start:stop into ``out`` ((stop - start, G) float32) with
        the float32 product ``name``."""
        q = self.q[start:stop]
        if self.metric == "euclidean" and name == "torch":  # fast-reid's: (|q|^2 + |g|^2).addmm_(q, g.T, alpha=-2)
            torch.add(self.q_sq[start:stop, None], self.g_sq[None, :], out=out)
            with strict_matmul():
                out.addmm_(q, self.g.t(), alpha=-2.0)
        elif self.metric == "cosine":  # 1 + (-q) g^T = 1 - mm, as fast-reid's
            g, scale = self._cosine_gallery(name)
            _MM[name](q, g, out)
            if scale is None:
                out.add_(1.0)
            else:
                torch.addcmul(out.new_ones(()), out, scale, out=out)
        else:
            _MM[name](q, self.g, out)
            out.mul_(-2.0).add_(self.q_sq[start:stop, None] + self.g_sq[None, :])
        if self.dups is not None:  # equal gallery rows, equal distances (their tie kept)
            out[:, self.dups[0]] = out[:, self.dups[1]]

    def _fill(self, start, out):
        """Write the distances of query rows start:start + len(out) into ``out``. While "auto" has not
        chosen, the first rows are its trials (:meth:`_trial`); the rest use the product it keeps."""
        at, stop = start, start + len(out)
        while self.product is None and at < stop:
            at += self._trial(at, out[at - start:])
        if at < stop:
            self._compute(at, stop, out[at - start:], self.product)

    def _trial(self, start, out):
        """One product's trial on query rows from ``start`` (into ``out``): a warm-up, then
        ``TRIAL_PIECES`` timed pieces of ``TRIAL_ROWS`` real rows, its best per-row time kept.
        Products go in ``_MM``'s order, torch's first: OpenBLAS's idle threads spin for a while
        after each product and would slow the next one. Returns the rows computed."""
        name = next(n for n in _MM if n not in self.trials)
        _warm_up(name, self.q, self.g)
        best, done = float("inf"), 0
        for _ in range(TRIAL_PIECES):
            rows = min(TRIAL_ROWS, len(out) - done)
            if rows == 0:
                break
            t0 = time.perf_counter()
            self._compute(start + done, start + done + rows, out[done:done + rows], name)
            best, done = min(best, (time.perf_counter() - t0) / rows), done + rows
        self.trials[name] = best
        if len(self.trials) == len(_MM):
            self.product = _chosen(self.trials, self.q.shape[1])
        return done

    def __call__(self, start, stop):
        a, b = self.span
        if a <= start and stop <= b:
            return self.buf[start - a:stop - a]
        if stop - start > self.rows:  # larger than the buffer: a tensor of its own
            out = torch.empty((stop - start, len(self.g)), dtype=torch.float32, device=self.q.device)
            self._fill(start, out)
            return out
        if self.buf is None:
            if self.rows < len(self.q):  # a whole number of chunks (all the queries need no rounding)
                self.rows = max(stop - start, self.rows // (stop - start) * (stop - start))
            self.buf = torch.empty((self.rows, len(self.g)), dtype=torch.float32, device=self.q.device)
            if self.product is None:  # the trials write here: its pages faulted in before any is timed
                self.buf[:len(_MM) * TRIAL_PIECES * TRIAL_ROWS].zero_()
        end = min(len(self.q), start + self.rows)
        self._fill(start, self.buf[:end - start])
        self.span = (start, end)
        return self.buf[:stop - start]


__all__ = ["METRICS", "PRODUCTS", "PRODUCT_BYTES", "TRIAL_ROWS", "product_backend", "product_into", "duplicate_rows",
           "FeatureBlocks"]
