"""``ClusteringHook``: re-computes the pseudo-labels of the unlabelled target set every epoch."""
import logging
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm
from fastreid.utils.env import seed_all_rng

from canu_plugin.errors import CanuError
from canu_plugin.jsonl import append_jsonl
from canu_plugin.evaluation.diagnostics import cluster_report

logger = logging.getLogger(__name__)


def _broadcast(obj):
    """Rank 0's ``obj`` on every rank (torch.distributed's object broadcast)."""
    if comm.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ClusteringHook(HookBase):
    """At the start of every ``CLUSTERING.PERIOD``-th epoch: extract L2-normalised eval-mode
    features of the target set (all ranks), cluster them on rank 0, broadcast labels and centroids,
    and hand them to the trainer (:meth:`Trainer.set_pseudo_labels`), which rebuilds the loader,
    re-sizes the classifier, resets its optimizer state and initialises it from the centroids.

    Its state (pseudo-labels, centroids, classifier, epoch) is saved in fast-reid's checkpoint,
    so ``--resume`` continues with the pseudo-labels of the interrupted run.
    """

    def __init__(self, cfg, target):
        self.cfg = cfg
        self.target = target
        self.period = max(int(cfg.CLUSTERING.PERIOD), 1)
        self.labels = None        # (N,) int64, -1 = outlier
        self.view_labels = None   # (N, V-1) int64 labels of the model's other views (SSG), or None
        self.centroids = None     # (K, D) float32
        self.epoch = -1           # epoch of the labels above
        self._restored_classifier = None
        self.log_path = os.path.join(cfg.OUTPUT_DIR, cfg.PSEUDO.LOG_FILE) if cfg.PSEUDO.LOG_FILE else ""

    # ---- the hook ----------------------------------------------------------------------------
    def before_epoch(self):
        epoch = self.trainer.epoch
        if self.cfg.PSEUDO.SEED >= 0:
            seed_all_rng(self.cfg.PSEUDO.SEED + epoch)
        init = None  # classifier rows to install; None keeps the current classifier
        if self.labels is None or epoch % self.period == 0:
            if self._recluster(epoch):
                init = self.centroids
        elif self._restored_classifier is not None:
            init = self._restored_classifier
            logger.info(f"epoch {epoch}: pseudo-labels of epoch {self.epoch} restored from the checkpoint")
        self._restored_classifier = None
        # the loader is rebuilt every epoch (seeded by epoch), so a resumed run repeats the batches
        self.trainer.set_pseudo_labels(self.target, self.labels, self.centroids,
                                       seed=max(self.cfg.PSEUDO.SEED, 0) + epoch, classifier_init=init,
                                       view_labels=self.view_labels)

    def _recluster(self, epoch):
        """Cluster this epoch's features; returns False when the last labels were kept."""
        from canu_plugin.engine.features import extract_features
        t0 = time.perf_counter()
        feats = extract_features(self.trainer.model, self.target.items(), self.cfg, normalize=False)
        t1 = time.perf_counter()
        knn = self._sharded_knn(feats)  # CLUSTERING.KNN_SHARDED: every rank searches a share; else None
        result = self._cluster_views(feats, knn) if comm.is_main_process() else None
        labels, view_labels, centroids, info = _broadcast(result)
        t2 = time.perf_counter()
        gt = self.target.gt if self.cfg.PSEUDO.GT_DIAGNOSTICS else None
        report = cluster_report(labels, self.target.camids, gt)
        for v in range(view_labels.shape[1] if view_labels is not None else 0):  # SSG's parts (Fig. 6)
            part = cluster_report(view_labels[:, v], self.target.camids, gt)
            report.update({f"view{v + 1}_{k}": part[k] for k in ("num_clusters", "mi_cam", "lost_ids") if k in part})
        probe = info.pop("cam_probe", None)
        report.update(epoch=epoch, extract_s=round(t1 - t0, 3), cluster_s=round(t2 - t1, 3),
                      **{f"clustering_{k}": round(float(v), 4) for k, v in info.items()})
        if probe is not None:
            report["cam_probe"] = round(probe, 4)
        accepted = self._accept(labels, report)
        if accepted:
            self.labels, self.view_labels, self.centroids, self.epoch = labels, view_labels, centroids, epoch
        report["kept_previous"] = not accepted
        self._log(report)
        return accepted

    def _sharded_knn(self, feats):
        """Per view, the k-NN lists searched by all ranks (on rank 0; None elsewhere), or None when
        CLUSTERING.KNN_SHARDED does not apply (rank 0 then searches alone)."""
        from canu_plugin.clustering.distributed import sharded_knn_enabled, sharded_knn_views
        if not sharded_knn_enabled(self.cfg.CLUSTERING.KNN_SHARDED):
            return None
        views = self.trainer.unwrapped_model.cluster_feature_views(feats) if comm.is_main_process() else None
        return sharded_knn_views(views, self.cfg)

    def _cluster_views(self, feats, knn=None):
        """Cluster each of the model's feature views (rank 0).

        Args:
            feats: (N, D) raw eval-mode features.
            knn: per view, precomputed (sims, idx) from :meth:`_sharded_knn`, or None.
        Returns:
            labels (N,) of view 0, labels (N, V-1) of the other views or None, centroids (K, D_0)
            of view 0, info dict (timings, eps of view 0, camera probe).
        """
        from canu_plugin.clustering import cluster
        views = self.trainer.unwrapped_model.cluster_feature_views(feats)
        labels, centroids, info = cluster(views[0], self.cfg, return_info=True, knn=knn[0] if knn else None)
        info = {k: v for k, v in info.items() if k.endswith("_s") or k == "eps"}
        extra = []
        for v, view in enumerate(views[1:], 1):
            lab, _ = cluster(view, self.cfg, knn=knn[v] if knn else None)
            extra.append(np.asarray(lab, dtype=np.int64))
        if self.cfg.PSEUDO.CAMERA_PROBE:
            info["cam_probe"] = self._camera_probe(views[0])
        return (np.asarray(labels, dtype=np.int64), np.stack(extra, 1) if extra else None,
                torch.as_tensor(centroids, dtype=torch.float32), info)

    def _camera_probe(self, features):
        """Held-out accuracy (0-1) of a linear camera probe on the (N, D) target features, or None."""
        from canu_plugin.evaluation.probes import camera_probe_accuracy
        try:
            return camera_probe_accuracy(np.asarray(features), self.target.camids,
                                         max_samples=self.cfg.TEST.CANU.PROBE_MAX_IMAGES)[0]
        except ValueError as e:
            logger.warning(f"camera probe skipped: {e}")
            return None

    def _accept(self, labels, report):
        """Enough clusters for a P x K batch? Otherwise keep the last labels (or raise)."""
        need = max(self.cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size() // self.cfg.DATALOADER.NUM_INSTANCE, 2)
        if report["num_clusters"] >= need:
            return True
        msg = (f"clustering found {report['num_clusters']} clusters ({report['num_outliers']} of {len(labels)} "
               f"samples are outliers); a P x K batch needs {need}")
        if self.labels is None or self.cfg.PSEUDO.ON_FAILURE == "error":
            raise CanuError(msg + ". Raise CLUSTERING.EPS or lower CLUSTERING.MIN_SAMPLES, start from a "
                                  "better model (MODEL.WEIGHTS from source training), or lower SOLVER.IMS_PER_BATCH.")
        logger.warning(msg + f"; keeping the pseudo-labels of epoch {self.epoch}")
        return False

    def _log(self, report):
        logger.info("pseudo-labels: " + ", ".join(f"{k}={v}" for k, v in report.items()))
        storage = self.trainer.storage
        for k, v in report.items():
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                storage.put_scalar(f"pseudo/{k}", v, smoothing_hint=False)
        if self.log_path and comm.is_main_process():
            append_jsonl(self.log_path, report)

    # ---- checkpointing (fast-reid's Checkpointer calls these) ---------------------------------
    def state_dict(self):
        """Tensors and ints only: loadable with ``torch.load(weights_only=True)``."""
        if self.labels is None:
            return {"epoch": -1}
        state = {"epoch": int(self.epoch), "labels": torch.from_numpy(self.labels), "centroids": self.centroids,
                 "classifiers": [w.detach().cpu() for w in self.trainer.unwrapped_model.classifier_weights()]}
        if self.view_labels is not None:
            state["view_labels"] = torch.from_numpy(self.view_labels)
        return state

    def load_state_dict(self, state):
        self.epoch = int(state.get("epoch", -1))
        if self.epoch < 0:
            return
        self.labels = state["labels"].numpy().astype(np.int64)
        self.centroids = state["centroids"]
        self._restored_classifier = state["classifiers"]
        self.view_labels = state["view_labels"].numpy().astype(np.int64) if "view_labels" in state else None
        if len(self.labels) != len(self.target):
            raise CanuError(f"checkpoint has pseudo-labels for {len(self.labels)} images but the target set has "
                            f"{len(self.target)}: it was written for another DATASETS.NAMES; use a new OUTPUT_DIR")


class MeanTeacherHook(HookBase):
    """After every optimizer step, moves the model's mean teachers towards their students
    (``model.update_teachers()``, an exponential moving average; MMT)."""

    def after_step(self):
        self.trainer.unwrapped_model.update_teachers()


class RunLogHook(HookBase):
    """One JSON line per epoch in ``OUTPUT_DIR/<RUN_LOG>``: the epoch's training-loop time
    (``train_s``: its steps, data loading included; no clustering, no evaluation) and, when
    fast-reid's EvalHook evaluated after it, the results (``{dataset: {metric: value}}``).
    Placed after the EvalHook, so it sees that epoch's results."""

    def __init__(self, path):
        self.path = path
        self._first = self._last = None
        self._seen = None  # the last results object written

    def before_epoch(self):
        self._first = self._last = None

    def before_step(self):
        if self._first is None:
            self._first = time.perf_counter()

    def after_step(self):
        self._last = time.perf_counter()

    def after_epoch(self):
        seconds = None if self._first is None else self._last - self._first
        self._write(self.trainer.epoch + 1, seconds)

    def after_train(self):  # fast-reid evaluates the last epoch here when EVAL_PERIOD does not divide it
        self._write(self.trainer.epoch + 1, None, only_new_results=True)

    def _write(self, epoch, seconds, only_new_results=False):
        if not comm.is_main_process() or not self.path:
            return
        results = getattr(self.trainer, "_last_eval_results", None)
        if only_new_results and (results is None or results is self._seen):
            return
        record = {"epoch": epoch} if seconds is None else {"epoch": epoch, "train_s": round(seconds, 3)}
        if results is not None and results is not self._seen:
            self._seen = results
            if "Rank-1" in results:  # one test set: fast-reid returns its metrics directly
                results = {self.trainer.cfg.DATASETS.TESTS[0]: results}
            record["results"] = {ds: {k: float(v) for k, v in m.items() if isinstance(v, (int, float, np.number))}
                                 for ds, m in results.items()}
        append_jsonl(self.path, record)
