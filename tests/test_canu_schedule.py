"""MODEL.CANU.D_LR_SCHEDULE: CANU's discriminator rate follows the encoder's schedule (``encoder``) or stays
at D_LR (``constant``), and a resumed run continues it; a real tiny pseudo-label + CANU run."""
import logging
import shutil

import pytest
import torch
from fastreid.engine.train_loop import HookBase

from canu_plugin.errors import CanuError

CONFIG = "configs/synthetic/quick_pseudo.yml"
# three one-iteration epochs (each with its clustering), the encoder's rate x0.1 after epochs 0 and 1;
# explicit base rates, so that the expected rates do not depend on the shipped config's
SCHEDULE = ["CLUSTERING.K1", "10", "CLUSTERING.K2", "3", "MODEL.CANU.ENABLED", "True", "MODEL.CANU.HIDDEN_DIM", "64",
            "SOLVER.BASE_LR", "1e-4", "MODEL.CANU.D_LR", "3.5e-4", "SOLVER.MAX_EPOCH", "3", "SOLVER.STEPS", "[1, 2]",
            "SOLVER.GAMMA", "0.1", "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "1",
            "TEST.EVAL_PERIOD", "100", "PSEUDO.ITERS_PER_EPOCH", "1"]
ENCODER = [1e-4, 1e-5, 1e-6]


class _LrProbe(HookBase):
    """(encoder's rate, discriminator's rate) at every epoch's start, after the epoch's clustering."""

    def __init__(self):
        self.seen = []

    def before_epoch(self):
        self.seen.append((self.trainer.optimizer.param_groups[0]["lr"], self.trainer.d_optimizer.param_groups[0]["lr"]))


def _run(tiny_trainer, out, *opts, resume=False):
    trainer = tiny_trainer(CONFIG, out, *SCHEDULE, *opts)
    probe = _LrProbe()
    trainer.register_hooks([probe])  # after the clustering hook: the rates the epoch trains with
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return probe.seen


def test_canu_discriminator_rate_follows_the_encoder_schedule_and_resumes(tiny_trainer, tmp_path, caplog):
    full = _run(tiny_trainer, tmp_path / "full")
    enc, disc = zip(*full)
    assert enc == pytest.approx(ENCODER)
    assert disc == pytest.approx([3.5e-4, 3.5e-5, 3.5e-6])  # x0.1 at the encoder's milestones
    assert [d / e for e, d in full] == pytest.approx([3.5] * 3)  # D keeps its ratio to the encoder
    saved = torch.load(tmp_path / "full" / "model_0000.pth", weights_only=True)
    assert saved["d_lr_sched"]["last_epoch"] == 1  # the discriminator's scheduler is checkpointed
    cut = tmp_path / "cut"  # killed during epoch 1: the resumed run trains with the same rates
    shutil.copytree(tmp_path / "full", cut)
    (cut / "last_checkpoint").write_text("model_0000.pth")
    caplog.set_level(logging.WARNING, logger="canu_plugin.engine.adversarial")
    resumed = _run(tiny_trainer, cut, resume=True)
    assert [x for pair in resumed for x in pair] == pytest.approx([x for pair in full[1:] for x in pair])
    assert "no discriminator learning-rate scheduler" not in caplog.text


def test_canu_constant_schedule_keeps_d_lr_and_a_bad_value_is_refused(tiny_trainer, tmp_path):
    constant = _run(tiny_trainer, tmp_path / "constant", "MODEL.CANU.D_LR_SCHEDULE", "constant")
    assert [d for _, d in constant] == pytest.approx([3.5e-4] * 3)
    assert [e for e, _ in constant] == pytest.approx(ENCODER)  # the encoder's schedule is unchanged
    assert "d_lr_sched" not in torch.load(tmp_path / "constant" / "model_final.pth", weights_only=True)
    with pytest.raises(CanuError, match="MODEL.CANU.D_LR_SCHEDULE 'cosine'"):
        tiny_trainer(CONFIG, tmp_path / "bad", *SCHEDULE, "MODEL.CANU.D_LR_SCHEDULE", "cosine")
