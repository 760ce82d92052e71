"""Hooks of the pseudo-label loop: :class:`ClusteringHook` (when to cluster, whether to accept a
clustering, logging, checkpointing) and :class:`MeanTeacherHook` (MMT's EMA teachers)."""
import logging

import numpy as np
from fastreid.engine.train_loop import HookBase
from fastreid.utils.env import seed_all_rng

from canu_plugin.clustering.advice import too_few_clusters_advice
from canu_plugin.data.pseudo_labels import PseudoLabels, required_clusters
from canu_plugin.errors import CanuError
from canu_plugin.evaluation.diagnostics import cluster_report

logger = logging.getLogger(__name__)


class ClusteringHook(HookBase):
    """At the start of every ``CLUSTERING.PERIOD``-th epoch, asks the :class:`LabelGenerator` for
    new pseudo-labels and keeps them if they have enough clusters for a P x K batch (otherwise the
    last ones, ``PSEUDO.ON_FAILURE``); at every epoch start, hands the labels in use to
    :meth:`Trainer.install_pseudo_labels` (which rebuilds the loader, seeded by the epoch, and
    installs new clusters in the model).

    Its state (the labels in use, the classifiers trained on them, the first clustering's eps) is
    saved in fast-reid's checkpoint, so ``--resume`` continues exactly where the run stopped.
    """

    def __init__(self, cfg, generator):
        self.cfg = cfg
        self.generator = generator
        self.period = max(int(cfg.CLUSTERING.PERIOD), 1)
        self.pseudo = None         # PseudoLabels in use
        self.first_eps = None      # eps per view of the run's first clustering (EPS_RULE quantile_once)
        self._restored = None      # (PseudoLabels, classifier weights) from a checkpoint, until installed

    # ---- the hook ----------------------------------------------------------------------------
    def before_epoch(self):
        epoch = self.trainer.epoch
        if self.cfg.PSEUDO.SEED >= 0:
            seed_all_rng(self.cfg.PSEUDO.SEED + epoch)
        if self.pseudo is None or epoch % self.period == 0:
            self._recluster(epoch)
        elif self._restored is not None:
            logger.info(f"epoch {epoch}: pseudo-labels of epoch {self.pseudo.epoch} restored from the checkpoint")
        restored = self._restored is not None and self._restored[0] is self.pseudo
        self.trainer.install_pseudo_labels(self.pseudo, seed=max(self.cfg.PSEUDO.SEED, 0) + epoch,
                                           classifier_weights=self._restored[1] if restored else None)
        self._restored = None

    def _recluster(self, epoch):
        """New labels from the generator; kept when they have enough clusters."""
        pseudo = self.generator(self.trainer.model, epoch, kept_eps=self.first_eps)
        report = self._report(pseudo, epoch)
        accepted = self._accept(pseudo, report)
        if accepted:
            self.pseudo = pseudo
            if self.first_eps is None and pseudo.eps:
                self.first_eps = pseudo.eps
        report["kept_previous"] = not accepted
        self._log(report)

    def _report(self, pseudo, epoch):
        """The epoch's diagnostics: cluster report (+ per-view for SSG), timings, camera probe."""
        gt = self.generator.target.gt if self.cfg.PSEUDO.GT_DIAGNOSTICS else None
        camids = self.generator.target.camids
        report = cluster_report(pseudo.labels, camids, gt)
        views = pseudo.view_labels
        for v in range(views.shape[1] if views is not None else 0):  # SSG's parts (CANU-ReID Fig. 6)
            part = cluster_report(views[:, v], camids, gt)
            report.update({f"view{v + 1}_{k}": part[k] for k in ("num_clusters", "mi_cam", "lost_ids") if k in part})
        if views is not None:  # what the loader trains on (PSEUDO.DROP_VIEW_OUTLIERS)
            trained = pseudo.trained(self.cfg.PSEUDO.DROP_VIEW_OUTLIERS)
            report.update(train_samples=int(trained.sum()), train_clusters=int(len(np.unique(pseudo.labels[trained]))))
        info = dict(pseudo.info)
        probe = info.pop("cam_probe", None)
        report.update(epoch=epoch, **info)
        if probe is not None:
            report["cam_probe"] = probe
        return report

    def _accept(self, pseudo, report):
        """Enough clusters for a P x K batch? Otherwise keep the last labels (or raise)."""
        need = required_clusters(self.cfg)
        found = report.get("train_clusters", report["num_clusters"])
        if found >= need:
            return True
        msg = (f"clustering found {found} clusters to train on ({report['num_outliers']} of "
               f"{len(pseudo.labels)} samples are outliers")
        if "train_clusters" in report:
            msg += f", {len(pseudo.labels) - report['train_samples']} left out as outliers of at least one view"
        msg += f"); a P x K batch needs {need}"
        if self.pseudo is None or self.cfg.PSEUDO.ON_FAILURE == "error":
            fix = too_few_clusters_advice(self.cfg.CLUSTERING, pseudo.labels, pseudo.eps[0] if pseudo.eps else None,
                                          first=self.first_eps is None)
            raise CanuError(f"{msg}. {fix} Otherwise start from a better model (MODEL.WEIGHTS from source training), "
                            "or lower SOLVER.IMS_PER_BATCH.")
        logger.warning(msg + f"; keeping the pseudo-labels of epoch {self.pseudo.epoch}")
        return False

    def _log(self, report):
        """The log line, and every number of the report as a ``pseudo/*`` scalar at the epoch's first
        iteration (the writers have written the previous epoch's last one: an earlier iteration
        would never reach metrics.json or TensorBoard)."""
        logger.info("pseudo-labels: " + ", ".join(f"{k}={v}" for k, v in report.items()))
        storage = self.trainer.storage
        storage.iter = self.trainer.iter
        for k, v in report.items():
            if isinstance(v, (int, float)):
                storage.put_scalar(f"pseudo/{k}", float(v), smoothing_hint=False)

    # ---- checkpointing (fast-reid's Checkpointer calls these) ---------------------------------
    def state_dict(self):
        """Tensors and numbers only: loadable with ``torch.load(weights_only=True)``."""
        if self.pseudo is None:
            return {"epoch": -1}
        classifiers = [w.detach().cpu() for w in self.trainer.unwrapped_model.classifier_weights()]
        state = {**self.pseudo.state_dict(), "classifiers": classifiers}
        if self.first_eps is not None:
            state["first_eps"] = list(self.first_eps)
        return state

    def load_state_dict(self, state):
        if int(state.get("epoch", -1)) < 0:
            return
        self.pseudo = PseudoLabels.from_state_dict(state)
        self._restored = (self.pseudo, state["classifiers"])
        self.first_eps = tuple(state["first_eps"]) if "first_eps" in state else None
        if len(self.pseudo.labels) != len(self.generator.target):
            raise CanuError(f"checkpoint has pseudo-labels for {len(self.pseudo.labels)} images but the target set has "
                            f"{len(self.generator.target)}: it was written for another DATASETS.NAMES; use a new OUTPUT_DIR")


class MeanTeacherHook(HookBase):
    """After every optimizer step, moves the model's mean teachers towards their students
    (``model.update_teachers()``, an exponential moving average; MMT)."""

    def after_step(self):
        self.trainer.unwrapped_model.update_teachers()


__all__ = ["ClusteringHook", "MeanTeacherHook"]
