"""``Trainer``: fast-reid's ``DefaultTrainer`` with canu-plugin's evaluator and input checks.

Only classmethods are overridden (the detectron2 / fast-reid ``projects/`` pattern); the training
loop, hooks, checkpointing and ``launch`` are fast-reid's own.
"""
import logging
import os

import fastreid.data.build as fastreid_build
from fastreid.data import build_reid_test_loader
from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.transforms import build_transforms
from fastreid.engine import DefaultTrainer
from fastreid.engine import defaults as fastreid_defaults
from fastreid.evaluation import ReidEvaluator
from fastreid.solver import build_optimizer
from fastreid.utils import comm
from fastreid.utils.checkpoint import Checkpointer

from canu_plugin.data.video import is_video_dataset
from canu_plugin.engine import pseudo, video
from canu_plugin.engine.adversarial import install_adversarial
from canu_plugin.engine.hooks import ClusteringHook, MeanTeacherHook, RunLogHook
from canu_plugin.errors import CanuError, find_canu_error
from canu_plugin.evaluation.camera_alignment import ACANDiagnosticsHook

logger = logging.getLogger(__name__)


class _QuietUserErrors(logging.Filter):
    """fast-reid's training loop logs every exception with its traceback before re-raising it;
    for a CanuError (bad input, reported in one line by the tools) drop that traceback."""

    def filter(self, record):
        if record.exc_info and find_canu_error(record.exc_info[1]) is not None:
            return False
        return True


logging.getLogger("fastreid.engine.train_loop").addFilter(_QuietUserErrors())


def datasets_root():
    """The dataset root fast-reid's loaders read (``$FASTREID_DATASETS`` at import, default ``datasets``)."""
    return fastreid_build._root


def set_datasets_root(path):
    """Point fast-reid's loaders (and child processes, via ``$FASTREID_DATASETS``) at ``path``.

    fast-reid reads the variable once, when ``fastreid.data.build`` is imported.
    """
    path = os.path.abspath(path)
    os.environ["FASTREID_DATASETS"] = path
    fastreid_build._root = path


def check_datasets(names):
    """Fail early, with the fix, when a dataset folder is missing or laid out wrongly."""
    from canu_plugin.data.datasets import check_dataset_layout
    for name in names:
        check_dataset_layout(name, datasets_root())


class Trainer(DefaultTrainer):
    """fast-reid's DefaultTrainer + dataset checks + canu-plugin's chunked exact evaluator.

    With ``PSEUDO.ENABLED`` it trains on cluster pseudo-labels of the (unlabelled) datasets in
    ``DATASETS.NAMES``: a :class:`ClusteringHook` re-clusters them every epoch and calls
    :meth:`set_pseudo_labels`.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.PSEUDO.ENABLED and cfg.PSEUDO.ITERS_PER_EPOCH > 0:
            self.iters_per_epoch = cfg.PSEUDO.ITERS_PER_EPOCH
            self.max_iter = self.max_epoch * self.iters_per_epoch
        install_adversarial(self, cfg, self._num_cameras())

    def _num_cameras(self):
        target = getattr(self.data_loader, "canu_target", None)
        return int(target.camids.max()) + 1 if target is not None else self.data_loader.dataset.num_cameras

    def train(self):
        """fast-reid's training; a run resumed after its last epoch only evaluates (fast-reid would
        fail on the epoch counter of a loop that never ran)."""
        if self.start_epoch >= self.max_epoch:
            logger.info("training already finished: evaluating the final model")
            return self.test(self.cfg, self.model)
        return super().train()

    @property
    def unwrapped_model(self):
        """The model without its DistributedDataParallel wrapper."""
        return getattr(self.model, "module", self.model)

    @classmethod
    def build_model(cls, cfg):
        try:
            return video.prepare_model(cfg, super().build_model(cfg))  # tracklets: + temporal pooling
        except CanuError:  # the model's own clear message (e.g. MMT's source weights)
            raise
        except (ImportError, OSError, RuntimeError) as e:
            if not cfg.MODEL.BACKBONE.PRETRAIN:
                raise
            raise CanuError(
                f"could not load the ImageNet weights for MODEL.BACKBONE ({type(e).__name__}: {e}). "
                "Put the file on disk and set MODEL.BACKBONE.PRETRAIN_PATH to it, or set "
                "MODEL.BACKBONE.PRETRAIN False to train from scratch.") from e

    @classmethod
    def build_train_loader(cls, cfg):
        check_datasets(cfg.DATASETS.NAMES)
        if cfg.MODEL.ACAN.ENABLED:  # intra-camera labels only
            from canu_plugin.data.intra_camera import build_acan_train_loader
            return build_acan_train_loader(cfg, datasets_root())
        if not cfg.PSEUDO.ENABLED:
            if video.trains_on_video(cfg):  # supervised on tracklets (ACAN / pseudo-labels dispatch on the items)
                return video.build_video_train_loader(cfg, datasets_root())
            return super().build_train_loader(cfg)
        target = pseudo.TargetSet.from_config(cfg, datasets_root())
        loader = pseudo.placeholder_loader(cfg, target)
        loader.canu_target = target
        return loader

    @classmethod
    def build_optimizer(cls, cfg, model):
        if not cfg.PSEUDO.ENABLED:
            return super().build_optimizer(cfg, model)
        # the classifier is replaced every epoch: no contiguous parameter buffer
        return build_optimizer(cfg, model, contiguous=False)

    def build_hooks(self):
        hooks = super().build_hooks()
        if self.cfg.PSEUDO.ENABLED:
            hook = ClusteringHook(self.cfg, self.data_loader.canu_target)
            self.checkpointer.checkpointables["pseudo_labels"] = hook
            hooks.insert(0, hook)
        if hasattr(self.unwrapped_model, "update_teachers"):  # MMT's mean teachers
            hooks.insert(1, MeanTeacherHook())
        if self.cfg.MODEL.ACAN.ENABLED:  # d_inter-camera + discriminator confusion after each evaluation
            hooks.append(ACANDiagnosticsHook(self.cfg))
        if self.cfg.RUN_LOG:  # after fast-reid's EvalHook: sees the epoch's results
            hooks.append(RunLogHook(os.path.join(self.cfg.OUTPUT_DIR, self.cfg.RUN_LOG)))
        return hooks

    def set_pseudo_labels(self, target, labels, centroids, seed, classifier_init=None, view_labels=None):
        """Install an epoch's pseudo-labels: rebuild the loader; with ``classifier_init`` re-size the
        classifiers, reset their optimizer state and initialise them.

        Args:
            target: :class:`pseudo.TargetSet` of N samples.
            labels: (N,) int64 pseudo-labels, -1 = outlier.
            centroids: (K, D) centroids, kept by the model for conditioning.
            seed: sampler seed for this epoch.
            classifier_init: ``centroids`` (fresh clusters: classifiers set from them) or the list of
                saved classifier weights (resume); None keeps the classifiers.
            view_labels: (N, V-1) labels of the model's extra clustering views (SSG), or None.
        """
        old_loader = self._trainer.data_loader
        if hasattr(old_loader, "shutdown"):
            old_loader.shutdown()
        loader = pseudo.pseudo_loader(self.cfg, target, labels, seed)
        loader.canu_target = target
        self._trainer.data_loader = loader
        self._trainer._data_loader_iter = iter(loader)
        module = self.unwrapped_model
        if view_labels is not None:
            module.set_view_labels(dict(zip(target.paths, view_labels.tolist())))
        if classifier_init is None:
            module.centroids = centroids.to(module.device)
            return
        pairs = module.set_pseudo_labels(centroids)
        restored = classifier_init is not centroids
        if restored:
            module.load_classifier_weights(classifier_init)
        for old, new in pairs:
            pseudo.swap_parameter(self.optimizer, old, new, keep_state=restored)
        if comm.get_world_size() > 1:  # DDP must see the new parameters
            self._trainer.model = fastreid_defaults.DistributedDataParallel(
                module, device_ids=[comm.get_local_rank()], broadcast_buffers=False)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """fast-reid's test loader, with ``DATALOADER.NUM_WORKERS`` workers (fast-reid fixes 4)."""
        check_datasets([dataset_name])
        if is_video_dataset(dataset_name):  # tracklets: their frames, pooled by the video evaluator
            return video.build_video_test_loader(cfg, dataset_name, datasets_root())
        data = DATASET_REGISTRY.get(dataset_name)(root=datasets_root())
        if comm.is_main_process():
            data.show_test()
        test_set = CommDataset(data.query + data.gallery, build_transforms(cfg, is_train=False), relabel=False)
        return build_reid_test_loader(test_set=test_set, test_batch_size=cfg.TEST.IMS_PER_BATCH,
                                      num_query=len(data.query), num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        data_loader, num_query = cls.build_test_loader(cfg, dataset_name)
        if is_video_dataset(dataset_name):  # frame features pooled per tracklet (canu's evaluator, always)
            output_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "eval", dataset_name)
            return data_loader, video.build_video_evaluator(cfg, data_loader, num_query, output_dir)
        if cfg.TEST.CANU.ENABLED:
            from canu_plugin.evaluation import CanuReidEvaluator
            output_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "eval", dataset_name)
            return data_loader, CanuReidEvaluator(cfg, num_query, output_dir)
        return data_loader, ReidEvaluator(cfg, num_query, output_dir)

    @classmethod
    def evaluate_weights(cls, cfg):
        """``--eval-only``: build the model, load ``cfg.MODEL.WEIGHTS`` and test it.

        Returns:
            dict: fast-reid's results (per dataset when several are tested).
        """
        if not cfg.MODEL.WEIGHTS:
            raise CanuError("--eval-only needs MODEL.WEIGHTS: add `MODEL.WEIGHTS <output_dir>/model_final.pth`.")
        if not os.path.isfile(cfg.MODEL.WEIGHTS):
            raise CanuError(f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r} does not exist: train first, or point it "
                            "at a checkpoint (e.g. <OUTPUT_DIR>/model_final.pth).")
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAIN = False
        model = cls.build_model(cfg)
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
        return cls.test(cfg, model)
