"""fast-reid model-zoo checkpoints (e.g. market_bot_R50.pth) as source models, from a file: a tiny
one made with fast-reid's own Baseline and saved in the model zoo's format."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from fastreid.modeling import build_model
from fastreid.utils.checkpoint import Checkpointer

from canu_plugin.engine import Trainer, setup_cfg
from canu_plugin.errors import CanuError

ZOO_CLASSES = 751  # Market-1501's training identities


@pytest.fixture(scope="module")
def zoo_checkpoint(tmp_path_factory):
    """fast-reid's Baseline (ResNet-18, the quick configs' backbone) with a 751-class classifier,
    saved as fast-reid's model zoo files are: {"model", "optimizer", "scheduler", "iteration"}."""
    torch.manual_seed(0)
    cfg = setup_cfg("configs/synthetic/quick_sup.yml", ["MODEL.HEADS.NUM_CLASSES", str(ZOO_CLASSES)])
    model = build_model(cfg)
    assert type(model).__name__ == "Baseline" and type(model).__module__.startswith("fastreid.")
    state = model.state_dict()
    for k, v in state.items():  # trained-looking values, distinct from any fresh initialisation
        if "running_var" in k:
            v.copy_(1 + 0.1 * torch.rand_like(v))
        elif v.is_floating_point():
            v.add_(0.05 * torch.randn_like(v))
    state = {k: v.numpy() if k.endswith("bn1.running_mean") else v for k, v in state.items()}  # numpy, as old zoo files
    opt = torch.optim.Adam(model.parameters())
    path = str(tmp_path_factory.mktemp("zoo") / "synth_bot_R18.pth")
    torch.save({"model": state, "optimizer": opt.state_dict(), "scheduler": {"last_epoch": 119},
                "iteration": 17999}, path)
    return path, {k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}


def _built(config, *opts):
    cfg = setup_cfg(config, ["MODEL.DEVICE", "cpu", *opts])
    return Trainer.build_model(cfg), cfg


def _same_backbone(model_state, zoo_state, prefix=""):
    keys = [k for k in zoo_state if k.startswith("backbone.")]
    assert keys and all(torch.equal(model_state[prefix + k], zoo_state[k]) for k in keys)


@pytest.mark.parametrize("config", ["configs/synthetic/quick_pseudo.yml", "configs/synthetic/quick_ssg.yml"])
def test_zoo_checkpoint_as_model_weights(zoo_checkpoint, config, caplog):
    path, zoo = zoo_checkpoint
    model, cfg = _built(config, "MODEL.WEIGHTS", path)
    Checkpointer(model).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)  # DefaultTrainer.resume_or_load
    state = model.state_dict()
    _same_backbone(state, zoo)
    assert torch.equal(state["heads.bottleneck.0.weight"], zoo["heads.bottleneck.0.weight"])
    assert state["heads.weight"].size(0) != ZOO_CLASSES  # the 751-class classifier is skipped
    assert "heads.weight" in caplog.text


def test_zoo_checkpoints_as_mmt_sources(zoo_checkpoint):
    path, zoo = zoo_checkpoint
    model, _ = _built("configs/synthetic/quick_mmt.yml", "MODEL.MMT.SOURCE_WEIGHTS", f'["{path}", "{path}"]')
    state = model.state_dict()
    for net in ("net1.", "net2.", "teacher1.", "teacher2."):
        _same_backbone(state, zoo, prefix=net)


def test_zoo_checkpoint_of_another_backbone_is_refused(zoo_checkpoint):
    path, _ = zoo_checkpoint
    model, cfg = _built("configs/synthetic/quick_pseudo.yml", "MODEL.BACKBONE.DEPTH", "34x")
    with pytest.raises(CanuError, match="does not match this model's backbone"):
        Checkpointer(model).resume_or_load(path, resume=False)


def test_missing_weights_file_says_what_to_download(tmp_path):
    model, _ = _built("configs/synthetic/quick_pseudo.yml")
    with pytest.raises(CanuError, match=r"does not exist.*model-zoo.*market_bot_R50\.pth"):
        Checkpointer(model).resume_or_load(str(tmp_path / "market_bot_R50.pth"), resume=False)


def test_training_starts_from_a_zoo_checkpoint_in_another_folder(zoo_checkpoint, synth_root, tmp_path):
    """canu-train from a folder outside the repository, a shipped config by name, the zoo file as
    MODEL.WEIGHTS: one clustering epoch of one iteration, then the evaluation."""
    path, _ = zoo_checkpoint
    env = dict(os.environ, FASTREID_DATASETS=synth_root, OMP_NUM_THREADS="2")
    cmd = [sys.executable, "-m", "canu_plugin.cli.train", "--config-file", "configs/synthetic/quick_pseudo.yml",
           "MODEL.WEIGHTS", path, "SOLVER.MAX_EPOCH", "1", "PSEUDO.ITERS_PER_EPOCH", "1", "TEST.EVAL_PERIOD", "1",
           "OUTPUT_DIR", "out"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Skip loading parameter 'heads.weight'" in log and "| SynthA" in log
    assert (tmp_path / "out" / "model_final.pth").is_file()
