"""``Trainer``: fast-reid's ``DefaultTrainer`` extended for canu-plugin's methods.

fast-reid's training loop, hooks, checkpointing and ``launch`` are used as they are; this class adds
dataset checks, the chunked exact evaluator, ACAN's intra-camera loader, the camera-adversarial
step (:mod:`.adversarial`) and the pseudo-label loop: the trainer owns the unlabelled target set
(``target_set``) and installs each clustering (:meth:`install_pseudo_labels`) that the
:class:`~canu_plugin.engine.hooks.ClusteringHook` gets from the :class:`~canu_plugin.engine.label_generator.LabelGenerator`.
"""
import logging
import os

from fastreid.data import build_reid_test_loader
from fastreid.data.common import CommDataset
from fastreid.data.transforms import build_transforms
from fastreid.engine import DefaultTrainer
from fastreid.engine import hooks as fastreid_hooks
from fastreid.evaluation import ReidEvaluator
from fastreid.solver import build_optimizer
from fastreid.utils import comm
from fastreid.utils.checkpoint import Checkpointer
from fastreid.utils.events import CommonMetricPrinter

from canu_plugin.data.datasets import check_dataset_layout, check_images_readable, test_items
from canu_plugin.checkpoint import remove_stale_temporaries
from canu_plugin.data.pseudo_labels import SourceSet, TargetSet, placeholder_loader, pseudo_label_loader
from canu_plugin.data.root import datasets_root
from canu_plugin.distributed import unwrap, wrap
from canu_plugin.engine.adversarial import (DiscriminatorLRScheduler, adversarial_settings, discriminator_lr_schedule,
                                            install_adversarial)
from canu_plugin.engine.diagnostic_hooks import (ACANDiagnosticsHook, BufferSyncHook, DiscriminatorEpochHook,
                                                EpochTimeHook, order_epoch_end)
from canu_plugin.engine.hooks import ClusteringHook, MeanTeacherHook
from canu_plugin.engine.label_generator import LabelGenerator
from canu_plugin.engine.setup import check_batch, check_config_datasets, check_source_training
from canu_plugin.data.video import is_video_dataset
from canu_plugin.engine import run_files, schedule, video
from canu_plugin.engine.precision import PrecisionTrainer, amp_enabled, log_cpu_amp
from canu_plugin.errors import CanuError, find_canu_error
from canu_plugin.evaluation.pooled import PooledFeatureTap
from canu_plugin.modeling.contract import PseudoLabelModel

logger = logging.getLogger(__name__)


class _QuietUserErrors(logging.Filter):
    """fast-reid's training loop logs every exception with its traceback before re-raising it;
    for a CanuError (bad input, reported in one line by the tools) drop that traceback."""

    def filter(self, record):
        if record.exc_info and find_canu_error(record.exc_info[1]) is not None:
            return False
        return True


logging.getLogger("fastreid.engine.train_loop").addFilter(_QuietUserErrors())


def check_datasets(names):
    """Fail early, with the fix, when a dataset folder is missing or laid out wrongly."""
    for name in names:
        check_dataset_layout(name, datasets_root())


def swap_parameter(optimizer, old, new, keep_state=False):
    """Put ``new`` where ``old`` is in the optimizer's param groups and reset (or move) its state.

    Args:
        keep_state: move the old state to the new parameter when the shapes agree (resume).
    """
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is old:
                group["params"][i] = new
                state = optimizer.state.pop(old, None)
                if keep_state and state and all(
                        not hasattr(v, "shape") or v.dim() == 0 or v.shape == new.shape for v in state.values()):
                    optimizer.state[new] = state
                return
    raise ValueError("parameter to replace is not in the optimizer")


class Trainer(DefaultTrainer):
    """fast-reid's DefaultTrainer + dataset checks + canu-plugin's chunked exact evaluator.

    With ``PSEUDO.ENABLED`` it trains on cluster pseudo-labels of the (unlabelled) datasets in
    ``DATASETS.NAMES`` (``target_set``); the model must be a
    :class:`~canu_plugin.modeling.contract.PseudoLabelModel`.
    """

    def __init__(self, cfg):
        check_batch(cfg, comm.get_world_size())
        check_config_datasets(cfg, datasets_root())  # every dataset the config names, with the key that names it
        for name in cfg.DATASETS.TESTS:  # a corrupt test image would otherwise stop the run after training
            if not is_video_dataset(name):  # (tracklets: their parser checks every frame file exists)
                check_images_readable(it[0] for part in test_items(name, datasets_root()) for it in part)
        if comm.is_main_process():
            remove_stale_temporaries(cfg.OUTPUT_DIR)
        self.target_set = TargetSet.from_config(cfg, datasets_root()) if cfg.PSEUDO.ENABLED else None
        train_source = cfg.PSEUDO.ENABLED and cfg.PSEUDO.TRAIN_SOURCE and cfg.PSEUDO.SOURCE_DATASETS
        self.source_set = SourceSet.from_config(cfg, datasets_root()) if train_source else None
        self._installed = None  # the PseudoLabels the model and loader hold
        super().__init__(cfg)
        if cfg.PSEUDO.ENABLED:
            if not isinstance(self.unwrapped_model, PseudoLabelModel):
                raise CanuError(f"PSEUDO.ENABLED trains on pseudo-labels but MODEL.META_ARCHITECTURE "
                                f"{cfg.MODEL.META_ARCHITECTURE} is not a pseudo-label model: use PseudoBaseline "
                                "(with MODEL.HEADS.NAME PseudoEmbeddingHead), MMT or SSG")
        check_source_training(cfg, self.unwrapped_model)
        install_adversarial(self, cfg, self._num_cameras())
        device = self.unwrapped_model.device
        log_cpu_amp(cfg, device, logger.info)
        if cfg.SOLVER.AMP.ENABLED and not isinstance(self._trainer, PrecisionTrainer) \
                and device.type != "cuda":  # fast-reid's AMPTrainer needs CUDA
            old = self._trainer
            self._trainer = PrecisionTrainer(old.model, old.data_loader, old.optimizer, old.param_wrapper,
                                             amp=amp_enabled(cfg, device))

    def _num_cameras(self):
        if self.target_set is not None:
            return self.target_set.num_cameras
        return self.data_loader.dataset.num_cameras

    def resume_or_load(self, resume=True):
        """fast-reid's, with one-line errors for a missing ``MODEL.WEIGHTS`` or a ``last_checkpoint``
        naming a file that is gone (fast-reid asserts)."""
        ckpt = self.checkpointer
        if resume and ckpt.has_checkpoint():
            path = ckpt.get_checkpoint_file()
            if not os.path.isfile(path):
                raise CanuError(f"{os.path.join(self.cfg.OUTPUT_DIR, 'last_checkpoint')} names {os.path.basename(path)} "
                                "but that file is gone: put it back, write the name of another model_*.pth of the "
                                "folder into last_checkpoint, or delete last_checkpoint to start over")
        elif self.cfg.MODEL.WEIGHTS and not os.path.isfile(self.cfg.MODEL.WEIGHTS):
            raise CanuError(f"MODEL.WEIGHTS {self.cfg.MODEL.WEIGHTS!r} does not exist: train that model first (e.g. "
                            "the source model) or fix the path; leave MODEL.WEIGHTS empty to start from MODEL.BACKBONE")
        return super().resume_or_load(resume=resume)

    def train(self):
        """fast-reid's training, then ``OUTPUT_DIR/final_results.json`` (:mod:`.run_files`); a run
        resumed after its last epoch only evaluates its final model (fast-reid would fail on the
        epoch counter of a loop that never ran).

        Returns:
            fast-reid's test results of the final model (on the main process).
        """
        if self.start_epoch >= self.max_epoch:
            logger.info("training already finished: evaluating the final model")
            results = self.test(self.cfg, self.model)
        else:
            results = super().train()
        if comm.is_main_process():
            run_files.write_final_results(self.cfg.OUTPUT_DIR, results, self.max_epoch, self.cfg.DATASETS.TESTS)
        return results

    @property
    def unwrapped_model(self):
        """The model without its DistributedDataParallel wrapper."""
        return unwrap(self.model)

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

    def build_train_loader(self, cfg):
        """ACAN's intra-camera loader, the placeholder loader of pseudo-label training (one class,
        until the first clustering), or fast-reid's own."""
        if cfg.MODEL.ACAN.ENABLED:  # intra-camera labels only
            from canu_plugin.data.intra_camera import build_acan_train_loader
            return build_acan_train_loader(cfg, datasets_root())
        if self.target_set is not None and cfg.PSEUDO.ENABLED:
            return placeholder_loader(cfg, self.target_set, self.source_set)
        check_datasets(cfg.DATASETS.NAMES)
        if video.trains_on_video(cfg):  # supervised on tracklets (ACAN / pseudo-labels dispatch on the items)
            return video.build_video_train_loader(cfg, datasets_root())
        return super().build_train_loader(cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        if not cfg.PSEUDO.ENABLED:
            return super().build_optimizer(cfg, model)
        # the classifier is replaced every epoch: no contiguous parameter buffer
        return build_optimizer(cfg, model, contiguous=False)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer, iters_per_epoch):
        """fast-reid's schedulers, built for the run's real epoch length (:func:`.schedule.iters_per_epoch`)."""
        return super().build_lr_scheduler(cfg, optimizer, schedule.iters_per_epoch(cfg, iters_per_epoch))

    def build_writers(self):
        """fast-reid's writers; the printer's ETA also counts the clustering still to come."""
        period = self.cfg.CLUSTERING.PERIOD if self.cfg.PSEUDO.ENABLED else 0
        return [schedule.EpochAwareMetricPrinter(self.max_iter, self.max_epoch, period)
                if isinstance(w, CommonMetricPrinter) else w for w in super().build_writers()]

    def build_hooks(self):
        # fast-reid sized the epoch from the loader before calling this; the run's real length first
        self.iters_per_epoch = schedule.iters_per_epoch(self.cfg, self.iters_per_epoch)
        self.max_iter = self.max_epoch * self.iters_per_epoch
        hooks = super().build_hooks()
        model, cfg = self.unwrapped_model, self.cfg
        if discriminator_lr_schedule(cfg) == "encoder":  # D's rate stepped right after the encoder's
            at = next(i for i, h in enumerate(hooks) if isinstance(h, fastreid_hooks.LRScheduler)) + 1
            hooks.insert(at, DiscriminatorLRScheduler())
        first = [BufferSyncHook()] if comm.get_world_size() > 1 else []
        if cfg.PSEUDO.ENABLED:
            hook = ClusteringHook(cfg, LabelGenerator(cfg, self.target_set, datasets_root(), self.source_set))
            self.checkpointer.checkpointables["pseudo_labels"] = hook
            first.append(hook)
        if isinstance(model, PseudoLabelModel) and model.has_mean_teachers:
            first.append(MeanTeacherHook())
        epoch_end = [EpochTimeHook()]  # after fast-reid's EvalHook, before the writers
        if adversarial_settings(cfg) is not None:
            epoch_end.append(DiscriminatorEpochHook())
        if cfg.MODEL.ACAN.ENABLED:  # d_inter-camera + discriminator confusion after each evaluation
            epoch_end.append(ACANDiagnosticsHook(cfg))
        return first + order_epoch_end(hooks, epoch_end)

    def install_pseudo_labels(self, pseudo, seed, classifier_weights=None):
        """Train on ``pseudo`` from now on: rebuild the loader (every epoch, seeded by it) and, when
        ``pseudo`` is not installed yet, install its clusters in the model and swap the re-sized
        classifiers in the optimizer (fresh state, or the saved state when ``classifier_weights``
        restores a checkpoint's classifiers); a model that ``resets_optimizer_state`` (MMT) gets a fresh
        state for all its parameters with new (not restored) clusters, learning rates left as they are.

        Args:
            pseudo: :class:`~canu_plugin.data.pseudo_labels.PseudoLabels` of ``target_set``.
            seed: sampler seed of the epoch (identical on every rank).
            classifier_weights: None, or the classifiers saved with ``pseudo`` (resume).
        """
        old_loader = self._trainer.data_loader
        if hasattr(old_loader, "shutdown"):
            old_loader.shutdown()
        module = self.unwrapped_model
        loader = pseudo_label_loader(self.cfg, self.target_set, pseudo, seed, module.num_train_views, self.source_set)
        self._trainer.data_loader = loader
        self._trainer._data_loader_iter = iter(loader)
        if pseudo is self._installed:
            return
        restore = classifier_weights is not None
        if module.resets_optimizer_state and not restore:  # MMT: a new optimizer state with each clustering
            self.optimizer.state.clear()
        for old, new in module.install_clusters(pseudo, classifier_weights):
            swap_parameter(self.optimizer, old, new, keep_state=restore)
        self._trainer.model = wrap(module)  # DDP must see the new parameters
        self._installed = pseudo

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """fast-reid's test loader, with ``DATALOADER.NUM_WORKERS`` workers (fast-reid fixes 4)."""
        if is_video_dataset(dataset_name):  # tracklets: their frames, pooled by the video evaluator
            check_datasets([dataset_name])
            return video.build_video_test_loader(cfg, dataset_name, datasets_root())
        query, gallery = test_items(dataset_name, datasets_root(), show=True)
        test_set = CommDataset(query + gallery, build_transforms(cfg, is_train=False), relabel=False)
        return build_reid_test_loader(test_set=test_set, test_batch_size=cfg.TEST.IMS_PER_BATCH,
                                      num_query=len(query), num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def test(cls, cfg, model):
        """fast-reid's test; with ``TEST.CANU.CAMERA_DIAGNOSTICS`` the backbones' pooled features are
        recorded too (:mod:`canu_plugin.evaluation.pooled`: ``d_inter_pooled``)."""
        if not (cfg.TEST.CANU.ENABLED and cfg.TEST.CANU.CAMERA_DIAGNOSTICS):
            return super().test(cfg, model)
        with PooledFeatureTap(model):
            return super().test(cfg, model)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        data_loader, num_query = cls.build_test_loader(cfg, dataset_name)
        if is_video_dataset(dataset_name):  # frame features pooled per tracklet (canu's evaluator, always)
            output_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "eval", dataset_name)
            return data_loader, video.build_video_evaluator(cfg, data_loader, num_query, output_dir, dataset_name)
        if cfg.TEST.CANU.ENABLED:
            from canu_plugin.evaluation import CanuReidEvaluator
            output_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "eval", dataset_name)
            return data_loader, CanuReidEvaluator(cfg, num_query, output_dir)
        return data_loader, ReidEvaluator(cfg, num_query, output_dir)

    @classmethod
    def evaluate_weights(cls, cfg):
        """``--eval-only``: build the model, load ``cfg.MODEL.WEIGHTS`` and test it; the results also go to
        ``OUTPUT_DIR/final_results.json`` (:mod:`.run_files`; its epoch: the checkpoint's, -1 if it has none).

        Returns:
            dict: fast-reid's results (per dataset when several are tested).
        """
        if not cfg.MODEL.WEIGHTS:
            raise CanuError("--eval-only needs MODEL.WEIGHTS: add `MODEL.WEIGHTS <output_dir>/model_final.pth`.")
        if not os.path.isfile(cfg.MODEL.WEIGHTS):
            raise CanuError(f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r} does not exist: train first, or point it "
                            "at a checkpoint (e.g. <OUTPUT_DIR>/model_final.pth).")
        check_config_datasets(cfg, datasets_root(), eval_only=True)
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAIN = False
        model = cls.build_model(cfg)
        extra = Checkpointer(model).load(cfg.MODEL.WEIGHTS) or {}
        results = cls.test(cfg, model)
        if comm.is_main_process():
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            run_files.write_final_results(cfg.OUTPUT_DIR, results, extra.get("epoch", -1), cfg.DATASETS.TESTS,
                                          weights=os.path.basename(cfg.MODEL.WEIGHTS))
        return results
