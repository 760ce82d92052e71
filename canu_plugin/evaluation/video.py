"""Tracklet-level evaluation: frame embeddings pooled per tracklet, then the chunked exact metrics.

:class:`TrackletPooler` accumulates, batch after batch of frames, each tracklet's softmax-weighted
mean of its frame embeddings (all weights equal for average pooling) with a running maximum of the
scores (an online log-sum-exp), so a tracklet of any length costs one (D,) row, frames may arrive in
any order and in any number of batches, and the partial sums of several ranks merge exactly.

:class:`VideoReidEvaluator` is :class:`~canu_plugin.evaluation.evaluator.CanuReidEvaluator` on
tracklets: fast-reid's ``inference_on_dataset`` feeds it batches of frames (from
:class:`canu_plugin.data.video.clips.TrackletFrames`: every frame of every query and gallery
tracklet, or ``VIDEO.TEST_FRAMES`` evenly spaced ones); it pools them per tracklet and scores the
(N, D) tracklet features with the chunked exact evaluator: CMC Rank-1/5/10/20 and mAP (+ mINP),
the camera diagnostics, AQE and re-ranking. Protocol (``TEST.VIDEO_PROTOCOL``): gallery tracklets
of the query's id *and* camera are ignored, junk ones (pid -1; the parsers drop them already) are
ignored, distractors (pid 0) are negatives; with ``query_in_gallery`` (the official MARS protocol:
MARS-evaluation's ``evaluation_mars.m``) the query tracklets are gallery items too, so a query
also finds its id's queries from other cameras; without it (torchreid's) they are not. The
protocol and the gallery size are logged and reported as ``gallery_<protocol>``; with the queries
in the gallery ``mAP_trapezoid`` (MARS-evaluation's MATLAB AP, trapezoid rule) follows ``mAP``.
"""
import logging
from collections import OrderedDict

import numpy as np
import torch
from fastreid.utils import comm

from canu_plugin.errors import CanuError
from canu_plugin.evaluation.evaluator import CanuReidEvaluator
from canu_plugin.evaluation.pooled import active_tap
from canu_plugin.modeling.video import TRACKLET_KEY, frame_outputs

logger = logging.getLogger(__name__)
JUNK_PID = -1  # MARS's junk tracklets ("00-1"): ignored in every protocol


class TrackletPooler:
    """Per-tracklet weighted means of frame embeddings, accumulated online.

    For tracklet k with frames i (embedding e_i, score s_i): feature_k = sum_i softmax(s)_i e_i.
    State: ``m`` (N,) running max score, ``w`` (N,) sum of exp(s_i - m), ``v`` (N, D) sum of
    exp(s_i - m) e_i, ``pid`` / ``camid`` (N,) the labels seen (-2 before any frame).

    Args:
        num_tracklets: N.
    """

    def __init__(self, num_tracklets):
        self.n = int(num_tracklets)
        self.m = torch.full((self.n,), float("-inf"), dtype=torch.float64)
        self.w = torch.zeros(self.n, dtype=torch.float64)
        self.v = None  # (N, D), allocated by the first batch
        self.pid = torch.full((self.n,), -2, dtype=torch.int64)
        self.camid = torch.full((self.n,), -2, dtype=torch.int64)

    def add(self, tracklets, feats, scores=None, pids=None, camids=None):
        """Accumulate a batch of B frames.

        Args:
            tracklets: (B,) int tracklet index in [0, N); feats: (B, D) frame embeddings;
            scores: (B,) pooling logits (None = average pooling); pids, camids: (B,) labels or None.
        """
        t = torch.as_tensor(tracklets).long().cpu()
        e = feats.detach().double().cpu()
        s = torch.zeros(len(t), dtype=torch.float64) if scores is None else scores.detach().double().cpu()
        if len(t) and (t.min() < 0 or t.max() >= self.n):
            raise CanuError(f"tracklet index out of range [0, {self.n}): the loader and the evaluator disagree")
        if self.v is None:
            self.v = torch.zeros(self.n, e.size(1), dtype=torch.float64)
        uniq, inv = torch.unique(t, return_inverse=True)
        batch_max = torch.full((len(uniq),), float("-inf"), dtype=torch.float64).scatter_reduce(0, inv, s, "amax")
        weight = torch.exp(s - batch_max[inv])
        w = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, weight)
        v = torch.zeros(len(uniq), e.size(1), dtype=torch.float64).index_add_(0, inv, weight.unsqueeze(1) * e)
        self._combine(uniq, batch_max, w, v)
        for labels, store in ((pids, self.pid), (camids, self.camid)):
            if labels is not None:
                store[t] = torch.as_tensor(labels).long().cpu()

    def _combine(self, rows, m2, w2, v2):
        """Merge partial sums (m2, w2, v2) of ``rows`` into the state."""
        m1 = self.m[rows]
        m = torch.maximum(m1, m2)
        a1 = torch.where(torch.isinf(m1), torch.zeros_like(m1), torch.exp(m1 - m))
        a2 = torch.where(torch.isinf(m2), torch.zeros_like(m2), torch.exp(m2 - m))
        self.m[rows] = m
        self.w[rows] = self.w[rows] * a1 + w2 * a2
        self.v[rows] = self.v[rows] * a1.unsqueeze(1) + v2 * a2.unsqueeze(1)

    def merge(self, other):
        """Add another pooler's partial sums (e.g. another rank's share of the frames)."""
        if other.n != self.n:
            raise ValueError(f"cannot merge poolers of {other.n} and {self.n} tracklets")
        if other.v is None:
            return self
        if self.v is None:
            self.v = torch.zeros_like(other.v)
        self._combine(torch.arange(self.n), other.m, other.w, other.v)
        for mine, theirs in ((self.pid, other.pid), (self.camid, other.camid)):
            mine[theirs != -2] = theirs[theirs != -2]
        return self

    def features(self):
        """(N, D) float32 tracklet features. Raises CanuError if a tracklet got no frame."""
        missing = (self.w == 0).nonzero().view(-1)
        if self.v is None or len(missing):
            first = int(missing[0]) if len(missing) else 0
            raise CanuError(f"{len(missing) if self.v is not None else self.n} of {self.n} tracklets got no frame "
                            f"(first: {first}): every tracklet needs at least one frame image")
        return (self.v / self.w.unsqueeze(1)).float()


def gather_poolers(pooler):
    """Rank 0: the pooler with every rank's frames merged; other ranks: None."""
    if comm.get_world_size() == 1:
        return pooler
    comm.synchronize()
    parts = comm.gather(pooler, dst=0)
    if not comm.is_main_process():
        return None
    for other in parts[1:]:
        parts[0].merge(other)
    return parts[0]


class VideoReidEvaluator(CanuReidEvaluator):
    """``CanuReidEvaluator`` on tracklet features pooled from frames (module docstring).

    Args:
        cfg: config; num_query: the first ``num_query`` tracklets are the queries;
        num_tracklets: N (queries + gallery); pooling: "avg" or "attention" (the eval outputs then
        carry a score column); output_dir: as for the image evaluator;
        query_in_gallery: rank the queries as gallery items too (the official MARS protocol);
        protocol: the protocol's name for the log and the ``gallery_<protocol>`` result
            (default ``TEST.VIDEO_PROTOCOL``).
    """

    def __init__(self, cfg, num_query, num_tracklets, pooling="avg", output_dir=None, query_in_gallery=False,
                 protocol=None):
        self.num_tracklets, self.pooling = int(num_tracklets), pooling
        self.query_in_gallery, self.protocol = bool(query_in_gallery), protocol or cfg.TEST.VIDEO_PROTOCOL
        super().__init__(cfg, num_query, output_dir)
        self.reset()

    def reset(self):
        super().reset()
        self._pooler = TrackletPooler(self.num_tracklets)
        self._pooled = TrackletPooler(self.num_tracklets)  # the backbone's pooled features, averaged per tracklet

    def process(self, inputs, outputs):
        """Pool a batch of frames' embeddings (and, while a PooledFeatureTap is active, their pooled
        backbone features: ``d_inter_pooled``) into their tracklets."""
        if TRACKLET_KEY not in inputs:
            raise CanuError("the video evaluator needs frames with their tracklet index: build the test loader with "
                            "canu_plugin.engine.video.build_video_test_loader")
        feats, scores = frame_outputs(outputs.float(), self.pooling)
        self._pooler.add(inputs[TRACKLET_KEY], feats, scores if self.pooling == "attention" else None,
                         inputs["targets"], inputs["camids"])
        tap = active_tap()
        pooled = tap.pop() if tap is not None else None
        if pooled is not None and len(pooled) == len(feats):
            self._pooled.add(inputs[TRACKLET_KEY], pooled)

    def _gather(self):
        """(tracklet features (N, D), pids (N,), camids (N,), pooled backbone features (N, C) or None)
        on the main process, else None."""
        pooler, pooled = gather_poolers(self._pooler), gather_poolers(self._pooled)
        if pooler is None:
            return None
        if pooler.v is None:
            raise CanuError("the video evaluator received no frame: the test set is empty; check DATASETS.TESTS")
        complete = pooled.v is not None and bool((pooled.w > 0).all())
        return pooler.features(), pooler.pid.clone(), pooler.camid.clone(), pooled.features() if complete else None

    def _rank_metrics(self, feats, pids, camids):
        """The image evaluator's metrics without the junk gallery tracklets, plus ``gallery``: the
        number of gallery items ranked (queries included under ``query_in_gallery``)."""
        n = self._num_query
        keep = torch.ones(len(pids), dtype=torch.bool)
        keep[n:] = pids[n:] != JUNK_PID
        res = super()._rank_metrics(feats[keep], pids[keep], camids[keep])
        res["gallery"] = int(keep.sum()) - n * (not self.query_in_gallery)
        logger.info(f"tracklet evaluation, TEST.VIDEO_PROTOCOL {self.protocol}: {n} queries against {res['gallery']} "
                    f"gallery tracklets (queries {'in' if self.query_in_gallery else 'not in'} the gallery; "
                    f"{int((~keep).sum())} junk ignored; {res['num_valid']} queries have a match in another camera)")
        return res

    def _summary(self, res):
        """The image summary plus ``Rank-20`` (the video tables report R1/5/10/20 and mAP),
        ``gallery_<protocol>`` (the gallery size under the protocol used) and, with the queries in
        the gallery (the official MARS protocol), ``mAP_trapezoid``: the AP of MARS-evaluation's
        MATLAB ``compute_AP`` (trapezoid rule), after ``mAP`` (fast-reid's, torchreid's)."""
        out, cmc = CanuReidEvaluator._summary(res), res["cmc"]
        items = list(out.items())
        at = [k for k, _ in items].index("Rank-10") + 1
        items.insert(at, ("Rank-20", cmc[min(20, len(cmc)) - 1] * 100))
        if self.query_in_gallery:  # MARS-evaluation's own AP (trapezoid rule), beside fast-reid's mAP
            items.insert(at + 2, ("mAP_trapezoid", np.float64(res["mAP_trapezoid"]) * 100))
        items.append((f"gallery_{self.protocol}", float(res["gallery"])))
        return OrderedDict(items)


__all__ = ["TrackletPooler", "gather_poolers", "VideoReidEvaluator"]
