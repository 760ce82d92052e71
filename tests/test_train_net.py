"""tools/train_net.py end to end on CPU: train, --eval-only, --resume, and the bad inputs."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "configs", "synthetic", "quick_sup.yml")


def train_net(root, *args, check=True):
    """Run tools/train_net.py in a subprocess, as a user would; returns the CompletedProcess."""
    env = dict(os.environ, FASTREID_DATASETS=root, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train_net.py"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"train_net failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    """A 6-epoch supervised run on tiny SynthA (the checkpoint the other tests use)."""
    out = str(tmp_path_factory.mktemp("sup"))
    proc = train_net(synth_root, "--config-file", QUICK, "SOLVER.MAX_EPOCH", "6", "TEST.EVAL_PERIOD", "6",
                     "SOLVER.BASE_LR", "0.001", "OUTPUT_DIR", out)
    return out, proc


def _losses(out):
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["total_loss"] for r in rows if "total_loss" in r]


def test_training_lowers_the_loss_and_evaluates(trained):
    out, proc = trained
    losses = _losses(out)
    # fast-reid logs a running median over 20 iterations: compare the first and the last record
    assert len(losses) >= 6 and losses[-1] < 0.9 * losses[0], losses
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert "Rank-1" in proc.stdout + proc.stderr and "mAP" in proc.stdout + proc.stderr
    ck = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert ck["epoch"] == 5 and "optimizer" in ck


def test_eval_only_reproduces_the_final_evaluation(trained, synth_root):
    out, proc = trained
    ev = train_net(synth_root, "--config-file", QUICK, "--eval-only",
                   "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "OUTPUT_DIR", out + "_eval")
    table_line = lambda text: [ln for ln in text.splitlines() if "| SynthA" in ln][-1]  # noqa: E731
    assert table_line(ev.stdout + ev.stderr).split("|")[2:] == table_line(proc.stdout + proc.stderr).split("|")[2:]


def test_resume_continues_from_the_last_checkpoint(trained, synth_root, tmp_path):
    out, _ = trained
    copy = str(tmp_path / "resumed")
    shutil.copytree(out, copy)
    ck = os.path.join(copy, "model_0001.pth")
    with open(os.path.join(copy, "last_checkpoint"), "w") as f:
        f.write("model_0001.pth")  # as if killed during epoch 2
    assert os.path.isfile(ck)
    proc = train_net(synth_root, "--config-file", QUICK, "--resume", "SOLVER.MAX_EPOCH", "3",
                     "TEST.EVAL_PERIOD", "3", "SOLVER.BASE_LR", "0.001", "OUTPUT_DIR", copy)
    assert "Starting training from epoch 2" in proc.stderr + proc.stdout
    assert torch.load(os.path.join(copy, "model_final.pth"), weights_only=True)["epoch"] == 2
    again = train_net(synth_root, "--config-file", QUICK, "--resume", "SOLVER.MAX_EPOCH", "3", "OUTPUT_DIR", copy)
    assert "| SynthA" in again.stdout + again.stderr  # evaluated, no crash on the finished loop


def _error(proc):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


def test_missing_dataset_root(tmp_path):
    msg = _error(train_net(str(tmp_path / "nowhere"), "--config-file", QUICK, "OUTPUT_DIR", str(tmp_path / "o"),
                           check=False))
    assert "SynthA" in msg and "make_synthetic" in msg


def test_unknown_config_key(synth_root, tmp_path):
    msg = _error(train_net(synth_root, "--config-file", QUICK, "SOLVER.NOT_A_KEY", "1", check=False))
    assert "NOT_A_KEY" in msg


def test_cuda_requested_without_gpu(synth_root):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    msg = _error(train_net(synth_root, "--config-file", QUICK, "MODEL.DEVICE", "cuda", check=False))
    assert "MODEL.DEVICE cpu" in msg


def test_checkpoint_of_another_architecture(trained, synth_root, tmp_path):
    out, _ = trained
    msg = _error(train_net(synth_root, "--config-file", QUICK, "--eval-only", "MODEL.BACKBONE.DEPTH", "34x",
                           "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
                           "OUTPUT_DIR", str(tmp_path / "o"), check=False))
    assert "backbone" in msg


def test_corrupt_image(synth_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(os.path.join(synth_root, "SynthA"), root / "SynthA")
    query = root / "SynthA" / "query"  # every query image is read by the evaluation
    victim = sorted(os.listdir(query))[0]
    (query / victim).write_bytes(b"\x00" * 10)
    msg = _error(train_net(str(root), "--config-file", QUICK, "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_EPOCH", "1",
                           "TEST.EVAL_PERIOD", "1", "OUTPUT_DIR", str(tmp_path / "o"), check=False))
    assert victim in msg and "corrupt" in msg
