"""Features -> re-ID metrics: :func:`evaluate` and ``CanuReidEvaluator``, fast-reid's
``ReidEvaluator`` on canu-plugin's chunked exact metrics (:mod:`.metrics`).

The evaluator has fast-reid's interface (reset / process / evaluate, gathered on rank 0), result
keys (``Rank-1``, ``Rank-5``, ``Rank-10``, ``mAP``, ``mINP``, ``metric``, in percent) and numbers
(see :mod:`.metrics` for the tie rule), without a dense (Q, G) matrix:

* ``TEST.METRIC`` cosine / euclidean: fast-reid's ``build_dist`` per query block (:func:`feature_blocks`).
* ``TEST.AQE``: fast-reid's alpha query expansion (same k, alpha, rounds), in row blocks, instead
  of fast-reid's ``aqe`` which builds a dense (Q+G)^2 similarity (35 GiB at MSMT17 size).
* ``TEST.RERANK``: k-reciprocal re-ranking ``(1 - lambda) * jaccard + lambda * dist`` with the
  sparse Jaccard distance of :mod:`canu_plugin.clustering.jaccard` (no (Q+G)^2 matrix; fast-reid's
  dense version also needs CUDA). Its Jaccard is fast-reid's (k1 nearest neighbours with self,
  half sets of round(k1/2)+1, softmax of the squared distance of unit features, k2 expansion); with
  ``TEST.METRIC euclidean`` fast-reid feeds raw features to it, here they are L2-normalised.
  ``TEST.CANU.RERANK_SPARSE False`` falls back to fast-reid's dense path.
* ``TEST.ROC`` needs every distance: it is delegated to fast-reid's evaluator (with a warning),
  as is everything when ``TEST.CANU.ENABLED`` is False.
"""
import copy
import itertools
import logging
from collections import OrderedDict

import numpy as np
import torch
from scipy import sparse
import torch.nn.functional as F
from fastreid.evaluation.reid_evaluation import ReidEvaluator
from fastreid.utils import comm

from canu_plugin.clustering.knn_torch import strict_matmul as _ieee_matmul  # plain float32, no TF32 (as fast-reid)
from canu_plugin.errors import CanuError
from canu_plugin.evaluation.distances import METRICS, FeatureBlocks
from canu_plugin.evaluation.metrics import rank_metrics, resolve_device
from canu_plugin.evaluation.pooled import active_tap

logger = logging.getLogger(__name__)



def prepare_features(q_feats, g_feats, q_pids, g_pids, device=None):
    """Validate (Q, D) query and (G, D) gallery features (arrays or tensors) against their (Q,), (G,)
    pids; return them as float32 tensors on ``resolve_device(device)``.

    Raises:
        CanuError: not 2-D, not real, NaN/inf, different dims, or label counts unlike the rows.
    """
    device, out = resolve_device(device), []
    for x, name in ((q_feats, "query features"), (g_feats, "gallery features")):
        t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        if t.ndim != 2 or t.dtype.is_complex or t.dtype == torch.bool:
            raise CanuError(f"{name} must be a real 2-D (N, D) matrix, got {tuple(t.shape)} {t.dtype}")
        t = t.to(device=device, dtype=torch.float32)
        suspect = (~torch.isfinite(t.sum(1))).nonzero().view(-1)  # one pass; a NaN / inf makes its row's sum one
        bad = suspect[~torch.isfinite(t[suspect]).all(1)]  # (a sum can overflow where every value is finite)
        if len(bad):
            raise CanuError(f"{name} contain NaN or inf in {len(bad)} of {len(t)} rows (first: row {int(bad[0])}): "
                            "the model diverged or the features are corrupt; check the model or restart "
                            "from a good checkpoint (MODEL.WEIGHTS)")
        out.append(t)
    q, g = out
    if q.shape[1] != g.shape[1]:
        raise CanuError(f"query features have {q.shape[1]} dims but gallery features {g.shape[1]}: "
                        "extract both with the same model")
    if len(q_pids) != len(q) or len(g_pids) != len(g):
        raise CanuError(f"{len(q)} query / {len(g)} gallery features but {len(q_pids)} / {len(g_pids)} "
                        "pids: pass one pid and camid per feature row")
    return q, g


def feature_blocks(q, g, metric="cosine", product="auto"):
    """Distance-block function for :func:`rank_metrics`, with fast-reid's ``build_dist`` semantics
    (:class:`.distances.FeatureBlocks`: large blocks by the machine's fastest float32 product).

    Args:
        q: (Q, D), g: (G, D) float32 tensors on the compute device.
        metric: "cosine" (1 - <q/|q|, g/|g|>) or "euclidean" (squared: |q|^2 + |g|^2 - 2 <q, g>);
        product: "auto", "torch" or "numpy" (``TEST.CANU.PRODUCT``).
    Returns: callable (start, stop) -> (stop - start, G) float32 distances (valid until its next call).
    """
    return FeatureBlocks(q, g, metric, product)


def evaluate(q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, *, metric="cosine", max_rank=50,
             chunk=256, device=None, threads=1, product="auto"):
    """Exact CMC, mAP and mINP of a query set against a gallery (Market-1501 protocol).

    Args:
        q_feats: (Q, D), g_feats: (G, D) features (tensors on any device, or arrays).
        q_pids, q_camids: (Q,); g_pids, g_camids: (G,) person and camera labels.
        metric: "cosine" or "euclidean" (fast-reid's ``TEST.METRIC``; euclidean is squared, as there).
        max_rank: CMC length; chunk: queries per block (memory ~ 40 B x chunk x G + the features);
        device: None = CUDA if available, else CPU; threads: see :func:`rank_metrics`;
        product: the distances' float32 product, "auto" (the faster of torch's and numpy's on
            this machine), "torch" (fast-reid's own) or "numpy".
    Returns:
        dict of :func:`rank_metrics`. Raises CanuError on empty/mismatched/NaN input or no valid query.
    """
    if metric not in METRICS:
        raise CanuError(f"unknown metric {metric!r}: set TEST.METRIC to one of {METRICS}")
    q, g = prepare_features(q_feats, g_feats, q_pids, g_pids, device)
    return rank_metrics(feature_blocks(q, g, metric, product), q_pids, g_pids, q_camids, g_camids,
                        max_rank=max_rank, chunk=chunk, device=q.device, threads=threads)


def query_expansion(q, g, qe_times=1, qe_k=5, alpha=3.0, chunk=256):
    """Alpha query expansion (fast-reid's ``aqe``), computed in row blocks.

    Each round, every feature becomes the mean over its ``qe_k`` most similar features (cosine,
    itself included) of ``feature * similarity ** alpha``.

    Args:
        q: (Q, D), g: (G, D) float32 tensors (same device).
        qe_times, qe_k, alpha: ``TEST.AQE.QE_TIME``, ``QE_K``, ``ALPHA``; chunk: rows per block.
    Returns:
        (q', g'): (Q, D) and (G, D) expanded features (not normalised, as in fast-reid).
    """
    feats = torch.cat([q, g])
    if not 1 <= int(qe_k) <= len(feats) or int(qe_times) < 0:
        raise CanuError(f"TEST.AQE.QE_K={qe_k} must be in [1, {len(feats)}] (query + gallery size) and "
                        f"TEST.AQE.QE_TIME={qe_times} >= 0")
    for _ in range(int(qe_times)):
        unit = F.normalize(feats, dim=1)
        out = torch.empty_like(feats)
        for start in range(0, len(feats), chunk):
            with _ieee_matmul():
                sims, idx = torch.mm(unit[start:start + chunk], unit.t()).topk(int(qe_k), dim=1)
            out[start:start + chunk] = (feats[idx] * sims.pow(alpha)[..., None]).mean(1)
        feats = out
    return feats[:len(q)], feats[len(q):]


def rerank_blocks(q, g, base_block, k1, k2, lambda_value, backend="auto", precision="auto",
                  query_in_gallery=False):
    """Distance-block function for k-reciprocal re-ranking, from the sparse Jaccard distance.

    Args:
        q: (Q, D), g: (G, D) float32 tensors; base_block: callable (start, stop) -> (B, G') original
            distances (:func:`feature_blocks`) to the gallery ``g`` (G' = G), or to ``cat([g, q])``
            when ``query_in_gallery`` (G' = G + Q); k1, k2, lambda_value: ``TEST.RERANK.*``;
        backend, precision: k-NN backend and torch first pass (``CLUSTERING.KNN_BACKEND`` /
            ``KNN_PRECISION``; "auto": the clustering's measured choice).
    Returns:
        callable (start, stop) -> (B, G') float32 ``(1 - lambda) * jaccard + lambda * dist``.
    """
    from canu_plugin.clustering.jaccard import jaccard_distance
    n_q = len(q)
    if not 1 <= int(k2) <= int(k1) <= n_q + len(g):
        raise CanuError(f"re-ranking needs 1 <= TEST.RERANK.K2 ({k2}) <= K1 ({k1}) <= query + gallery size "
                        f"({n_q + len(g)}): lower TEST.RERANK.K1/K2 or disable TEST.RERANK")
    jac = jaccard_distance(torch.cat([q, g]), k1=int(k1), k2=int(k2), backend=backend,  # absent = 1.0
                           precision=precision)
    q_rows = jac[:n_q]
    q_to_g = (sparse.hstack([q_rows[:, n_q:], q_rows[:, :n_q]]) if query_in_gallery else q_rows[:, n_q:]).tocsr()
    del jac

    def block(start, stop):
        dist = base_block(start, stop)
        part = q_to_g[start:stop].tocoo()
        jd = torch.ones_like(dist)
        rows, cols = (torch.from_numpy(a.astype(np.int64)).to(dist.device) for a in (part.row, part.col))
        jd[rows, cols] = torch.from_numpy(part.data).to(dist.device)
        return jd.mul_(1 - lambda_value).add_(dist.mul_(lambda_value))

    return block


class CanuReidEvaluator(ReidEvaluator):
    """fast-reid's re-ID evaluator with the chunked exact metrics of :mod:`.metrics`.

    Args:
        cfg: fast-reid config with canu-plugin's keys (``TEST.CANU.*``).
        num_query: the first ``num_query`` processed samples are the queries, the rest the gallery.
        output_dir: where the PCA plot goes (default: ``OUTPUT_DIR``).
    """

    query_in_gallery = False  # rank the queries as gallery items too (after the gallery): MARS's official protocol

    def _compile_dependencies(self):
        """Our metrics need no compiled code; fast-reid's own path (the fallback) keeps its behaviour."""
        if not self.cfg.TEST.CANU.ENABLED:
            super()._compile_dependencies()

    def evaluate(self):
        """Metrics of the processed samples on the main process ({} on the others).

        Returns:
            OrderedDict: Rank-1, Rank-5, Rank-10, mAP, mINP, metric (= (mAP + Rank-1) / 2), in percent.
        Raises:
            CanuError: nothing processed, empty query or gallery, NaN features, no valid query.
        """
        cfg = self.cfg
        dense = cfg.TEST.ROC.ENABLED or (cfg.TEST.RERANK.ENABLED and not cfg.TEST.CANU.RERANK_SPARSE)
        norm = cfg.TEST.get("CAMERA_NORM", False)
        if norm and (dense or not cfg.TEST.CANU.ENABLED):
            raise CanuError("TEST.CAMERA_NORM needs canu-plugin's evaluator: set TEST.CANU.ENABLED True and "
                            "TEST.ROC.ENABLED False (and TEST.CANU.RERANK_SPARSE True with TEST.RERANK), or drop "
                            "TEST.CAMERA_NORM")
        if not cfg.TEST.CANU.ENABLED:
            return super().evaluate()
        if dense:
            logger.warning("TEST.ROC / dense TEST.RERANK need the whole (Q, G) distance matrix: using "
                           "fast-reid's dense evaluator")
            return super().evaluate()
        gathered = self._gather()
        if gathered is None:
            return {}
        feats, pids, camids, pooled = gathered
        ranked = feats
        if norm:  # query and gallery together, by camera
            from canu_plugin.clustering.camera_norm import camera_normalize
            ranked = camera_normalize(feats, camids)
        self._results = self._summary(self._rank_metrics(ranked, pids, camids))
        if cfg.TEST.CANU.CAMERA_DIAGNOSTICS:
            self._results.update(self._camera_diagnostics(feats, pids, camids, pooled))
        return copy.deepcopy(self._results)

    def process(self, inputs, outputs):
        """fast-reid's, plus the batch's pooled backbone features while a
        :class:`~canu_plugin.evaluation.pooled.PooledFeatureTap` is active."""
        super().process(inputs, outputs)
        tap = active_tap()
        pooled = tap.pop() if tap is not None else None
        if pooled is not None and len(pooled) == len(outputs):
            self._predictions[-1]["pooled"] = pooled.cpu()

    def _camera_diagnostics(self, feats, pids, camids, pooled=None):
        """The model's own (N, D) ``feats`` (never camera-normalised): :func:`~.probes.camera_diagnostics` with
        the ``TEST.CANU`` keys, :func:`~.camera_bias.camera_bias_nmi` (distractors left out), and the metrics
        after per-camera normalization (:func:`~.camera_bias.camera_normalized_metrics`)."""
        from canu_plugin.evaluation.camera_bias import camera_bias_nmi, camera_normalized_metrics
        from canu_plugin.evaluation.probes import camera_diagnostics
        out = camera_diagnostics(feats, pids, camids, pooled, max_images=self.cfg.TEST.CANU.PROBE_MAX_IMAGES,
                                 pca_cameras=tuple(self.cfg.TEST.CANU.PCA_CAMERAS),
                                 folder=self._output_dir or self.cfg.OUTPUT_DIR)
        keep = (pids >= 0).numpy()
        out.update(camera_bias_nmi(feats[keep].float(), camids[keep].numpy(), pids[keep].numpy()))
        rank = lambda f: self._summary(self._rank_metrics(f, pids, camids))  # noqa: E731
        out.update(camera_normalized_metrics(rank, feats, camids))
        return out

    def _gather(self):
        """(features (N, D), pids (N,), camids (N,), pooled (N, C) or None) of all ranks on the
        main process, else None."""
        predictions = self._predictions
        if comm.get_world_size() > 1:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(predictions, dst=0)))
            if not comm.is_main_process():
                return None
        if not predictions:
            raise CanuError("the evaluator received no predictions: the test set is empty; check "
                            "DATASETS.TESTS and the dataset's query/ and bounding_box_test/ folders")
        feats, pids, camids = (torch.cat([p[k] for p in predictions]) for k in ("feats", "pids", "camids"))
        pooled = torch.cat([p["pooled"] for p in predictions]) if all("pooled" in p for p in predictions) else None
        return feats, pids, camids, pooled

    def _rank_metrics(self, feats, pids, camids):
        """:func:`.metrics.rank_metrics` with the configured metric, AQE and re-ranking; with
        ``query_in_gallery`` the gallery is the G gallery items followed by the Q queries (each query's
        own copy has its id and camera, so it is excluded like any same-camera match)."""
        cfg, n, with_q = self.cfg, self._num_query, self.query_in_gallery
        if cfg.TEST.METRIC not in METRICS:
            raise CanuError(f"TEST.METRIC={cfg.TEST.METRIC!r} is not supported: use one of {METRICS}")
        device = resolve_device(cfg.TEST.CANU.DEVICE)
        chunk = int(cfg.TEST.CANU.QUERY_CHUNK)
        pids, camids = pids.numpy(), camids.numpy()
        q, g = prepare_features(feats[:n], feats[n:], pids[:n], pids[n:], device)
        if cfg.TEST.AQE.ENABLED:
            q, g = query_expansion(q, g, cfg.TEST.AQE.QE_TIME, cfg.TEST.AQE.QE_K, cfg.TEST.AQE.ALPHA, chunk)
        block = feature_blocks(q, torch.cat([g, q]) if with_q else g, cfg.TEST.METRIC, cfg.TEST.CANU.PRODUCT)
        if cfg.TEST.RERANK.ENABLED:
            c = cfg.CLUSTERING if "CLUSTERING" in cfg else None
            knn = (c.KNN_BACKEND, c.KNN_PRECISION) if c is not None else ("auto", "auto")
            block = rerank_blocks(q, g, block, cfg.TEST.RERANK.K1, cfg.TEST.RERANK.K2, cfg.TEST.RERANK.LAMBDA, *knn,
                                  query_in_gallery=with_q)
        g_pids, g_camids = (np.concatenate([x[n:], x[:n]]) if with_q else x[n:] for x in (pids, camids))
        return rank_metrics(block, pids[:n], g_pids, camids[:n], g_camids,
                            max_rank=cfg.TEST.CANU.MAX_RANK, chunk=chunk, device=device, threads=cfg.TEST.CANU.THREADS)

    @staticmethod
    def _summary(res):
        """fast-reid's result dict (percent) from :func:`.metrics.rank_metrics`'s output."""
        cmc, out = res["cmc"], OrderedDict()
        for r in (1, 5, 10):
            out[f"Rank-{r}"] = cmc[min(r, len(cmc)) - 1] * 100  # a gallery under r images saturates
        out["mAP"] = np.float64(res["mAP"]) * 100
        out["mINP"] = np.float64(res["mINP"]) * 100
        out["metric"] = (np.float64(res["mAP"]) + cmc[0]) / 2 * 100
        return out


__all__ = ["METRICS", "CanuReidEvaluator", "evaluate", "prepare_features", "feature_blocks", "query_expansion",
           "rerank_blocks"]
