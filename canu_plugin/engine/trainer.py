"""``Trainer``: fast-reid's ``DefaultTrainer`` with canu-plugin's evaluator and input checks.

Only classmethods are overridden (the detectron2 / fast-reid ``projects/`` pattern); the training
loop, hooks, checkpointing and ``launch`` are fast-reid's own.
"""
import logging
import os

from fastreid.data.build import _root as FASTREID_ROOT
from fastreid.engine import DefaultTrainer
from fastreid.evaluation import ReidEvaluator
from fastreid.utils.checkpoint import Checkpointer

from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)


def datasets_root():
    """The dataset root fast-reid reads (``$FASTREID_DATASETS``, default ``datasets``)."""
    return os.getenv("FASTREID_DATASETS", FASTREID_ROOT)


def check_datasets(names):
    """Fail early, with the fix, when a dataset folder is missing or laid out wrongly."""
    from canu_plugin.data.datasets import check_dataset_layout
    for name in names:
        check_dataset_layout(name, datasets_root())


class Trainer(DefaultTrainer):
    """fast-reid's DefaultTrainer + dataset checks + canu-plugin's chunked exact evaluator."""

    @classmethod
    def build_model(cls, cfg):
        try:
            return super().build_model(cfg)
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
        return super().build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        check_datasets([dataset_name])
        return super().build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        data_loader, num_query = cls.build_test_loader(cfg, dataset_name)
        if cfg.TEST.CANU.ENABLED:
            from canu_plugin.evaluation import CanuReidEvaluator
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
