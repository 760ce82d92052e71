"""Query-to-gallery distance blocks for the evaluator, with fast-reid's ``build_dist`` semantics.

The distances are float32 products of the features: cosine ``1 - <q/|q|, g/|g|>`` or squared
euclidean ``|q|^2 + |g|^2 - 2 <q, g>``. Their product is most of the evaluation's time, so it
is computed

* by the machine's fastest float32 product: on the CPU, torch's (MKL / oneDNN) and numpy's
  (OpenBLAS in the PyPI wheels) run at different rates on different CPUs (either can be 1.5x the
  other), so ``product="auto"`` times both on a sample of the real features once per process
  (:func:`product_backend`); CUDA always uses torch's;
* in blocks of up to ``PRODUCT_BYTES`` of distances, written into one buffer that every block
  reuses (a fresh block would fault in its pages each time; small blocks run the GEMM slower),
  and handed out as views of ``chunk`` rows (the ranking's blocks).

Plain IEEE float32 products (no TF32), as fast-reid's. Either product rounds a few distances a
float32 ulp away from fast-reid's dense one (BLAS kernels sum in an order that depends on the
backend and the block's height), so metrics agree to ~1e-7; ties are ordered by gallery index.
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
SAMPLE = (128, 4096)        # "auto" times (queries, gallery rows) of the real features ...
ROUNDS = 1                  # ... this many rounds per backend, after one warm-up, interleaved
MARGIN = 0.10               # numpy's product is taken when > 10 % faster (else torch's, fast-reid's own)
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


def product_backend(q, g, product="auto"):
    """The float32 product that computes ``q @ g.T`` ("torch" or "numpy").

    Args:
        q: (Q, D), g: (G, D) float32 tensors on one device; product: one of ``PRODUCTS``.
    Returns:
        "torch" on CUDA, for small products and when asked for; "numpy" when asked for (CPU only);
        for "auto" on the CPU the faster of the two on a ``SAMPLE`` of the rows (best of
        ``ROUNDS``), measured once per process, feature dim and thread count, and logged.
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
    key = (q.shape[1], torch.get_num_threads())
    if key not in _CHOICE:
        a, b = q[:SAMPLE[0]], g[:SAMPLE[1]]
        out, best = torch.empty(len(a), len(b)), {name: float("inf") for name in _MM}
        for r in range(ROUNDS + 1):
            for name, mm in _MM.items():
                t0 = time.perf_counter()
                mm(a, b, out)
                best[name] = min(best[name], time.perf_counter() - t0) if r else best[name]
        _CHOICE[key] = "numpy" if best["numpy"] < (1.0 - MARGIN) * best["torch"] else "torch"
        logger.info("evaluation distances: %s's float32 product (sample %dx%d: %s)", _CHOICE[key], len(a), len(b),
                    ", ".join(f"{n} {1e3 * s:.1f} ms" for n, s in best.items()))
    return _CHOICE[key]


class FeatureBlocks:
    """Distance blocks of query rows to the gallery: ``blocks(start, stop)`` -> (stop - start, G)
    float32 tensor (the callable :func:`.metrics.rank_metrics` takes).

    Rows are computed ``PRODUCT_BYTES`` at a time into one buffer; a block is a view of it, valid
    until the next call (the caller may change it in place). Calls in increasing, non-overlapping
    order (the ranking's) compute each row once.

    Args:
        q: (Q, D), g: (G, D) float32 tensors on the compute device.
        metric: "cosine" or "euclidean" (squared); product: one of ``PRODUCTS``
            (:func:`product_backend`).
    """

    def __init__(self, q, g, metric="cosine", product="auto"):
        if metric not in METRICS:
            raise CanuError(f"unknown metric {metric!r}: set TEST.METRIC to one of {METRICS}")
        self.metric = metric
        if metric == "cosine":
            self.q, self.g = F.normalize(q, dim=1), F.normalize(g, dim=1)
        else:
            self.q, self.g = q, g
            self.q_sq, self.g_sq = q.pow(2).sum(1), g.pow(2).sum(1)
        self.product = product_backend(self.q, self.g, product)
        self.rows = max(1, min(len(q), PRODUCT_BYTES // (4 * max(1, len(g)))))
        self.buf, self.span = None, (0, 0)

    def _compute(self, start, stop, out):
        """Write the distances of query rows start:stop into ``out`` ((stop - start, G) float32)."""
        q = self.q[start:stop]
        if self.metric == "euclidean" and self.product == "torch":  # fast-reid's: (|q|^2 + |g|^2).addmm_(q, g.T, alpha=-2)
            torch.add(self.q_sq[start:stop, None], self.g_sq[None, :], out=out)
            with strict_matmul():
                out.addmm_(q, self.g.t(), alpha=-2.0)
            return
        _MM[self.product](q, self.g, out)
        if self.metric == "cosine":  # 1 - mm, as fast-reid's
            out.neg_().add_(1.0)
        else:
            out.mul_(-2.0).add_(self.q_sq[start:stop, None] + self.g_sq[None, :])

    def __call__(self, start, stop):
        a, b = self.span
        if a <= start and stop <= b:
            return self.buf[start - a:stop - a]
        if stop - start > self.rows:  # larger than the buffer: a tensor of its own
            out = torch.empty((stop - start, len(self.g)), dtype=torch.float32, device=self.q.device)
            self._compute(start, stop, out)
            return out
        if self.buf is None:
            self.buf = torch.empty((self.rows, len(self.g)), dtype=torch.float32, device=self.q.device)
        end = min(len(self.q), start + self.rows)
        self._compute(start, end, self.buf[:end - start])
        self.span = (start, end)
        return self.buf[:stop - start]


__all__ = ["METRICS", "PRODUCTS", "PRODUCT_BYTES", "product_backend", "FeatureBlocks"]
