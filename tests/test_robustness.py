"""Nothing silently wrong after a crash, in DDP, or on odd settings (issue: resume, benchmark
records, hangs, one-line errors, logs)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from canu_plugin.engine import Trainer, seed_from_config, set_datasets_root, setup_cfg
from canu_plugin.engine.run_files import epoch_records, read_final_results
from canu_plugin.errors import CanuError
from conftest import launch_watched

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "configs", "synthetic", "quick_pseudo.yml")
FAST = ["CLUSTERING.K1", "10", "CLUSTERING.K2", "3", "TEST.EVAL_PERIOD", "100"]


# ---- batch sizes a sampler can fill -----------------------------------------------------------
def test_a_batch_smaller_than_k_is_refused_instead_of_hanging(tiny_trainer, tmp_path):
    for opts, msg in ((["SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_INSTANCE", "4"], "NUM_INSTANCE 4"),
                      (["SOLVER.IMS_PER_BATCH", "18", "DATALOADER.NUM_INSTANCE", "4"], "multiple of 4")):
        with pytest.raises(CanuError, match=msg):
            tiny_trainer(QUICK, tmp_path, *FAST, *opts)


# ---- one-line errors ----------------------------------------------------------------------------
def test_bad_weights_files_and_periods_get_one_line_errors(tiny_trainer, tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    (tmp_path / "w.json").write_text(json.dumps({"model": {}}))
    (tmp_path / "noise.pth").write_bytes(os.urandom(2048))
    cases = [(str(tmp_path / "missing.pth"), "does not exist"), (str(tmp_path / "notes.txt"), "not a checkpoint"),
             (str(tmp_path / "w.json"), "not a checkpoint"), (str(tmp_path / "noise.pth"), "not a checkpoint")]
    for weights, msg in cases:
        trainer = tiny_trainer(QUICK, tmp_path / "o", *FAST, "MODEL.WEIGHTS", weights)
        with pytest.raises(CanuError, match=msg) as err:
            trainer.resume_or_load(resume=False)
        assert "weights_only=False" not in str(err.value)  # never advise loading untrusted objects here
    with pytest.raises(CanuError, match="CHECKPOINT_PERIOD"):
        setup_cfg(QUICK, ["SOLVER.CHECKPOINT_PERIOD", "0"])
    with pytest.raises(CanuError, match="put the flags first"):
        setup_cfg(QUICK, ["SOLVER.MAX_EPOCH", "2", "--resume"])


def test_eval_period_zero_evaluates_after_the_last_epoch_and_a_finished_run_reevaluates(tiny_trainer, tmp_path):
    opts = [*FAST[:4], "TEST.EVAL_PERIOD", "0"]
    results = tiny_trainer(QUICK, tmp_path, *opts).train()
    final = read_final_results(tmp_path)
    assert final["results"]["SynthA"]["mAP"] == pytest.approx(results["mAP"])
    os.remove(tmp_path / "final_results.json")  # killed after model_final.pth, before the record
    again = tiny_trainer(QUICK, tmp_path, *opts)
    again.resume_or_load(resume=True)
    assert again.start_epoch == again.max_epoch
    again.train()
    assert read_final_results(tmp_path)["results"]["SynthA"]["mAP"] == pytest.approx(results["mAP"])


def test_missing_last_checkpoint_file_and_stale_temporaries(tiny_trainer, tmp_path):
    (tmp_path / ".model_0003.pth.k2j4.tmp").write_bytes(b"partial")
    (tmp_path / "last_checkpoint").write_text("model_0003.pth")
    trainer = tiny_trainer(QUICK, tmp_path, *FAST)
    assert not (tmp_path / ".model_0003.pth.k2j4.tmp").exists()  # cleaned at start
    with pytest.raises(CanuError, match="model_0003.pth but that file is gone"):
        trainer.resume_or_load(resume=True)


def test_corrupt_test_image_is_found_before_training(use_synth_root, synth_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(os.path.join(synth_root, "SynthA"), root / "SynthA")
    victim = sorted(os.listdir(root / "SynthA" / "query"))[-1]
    (root / "SynthA" / "query" / victim).write_bytes(b"\x00" * 10)
    set_datasets_root(str(root))
    os.makedirs(tmp_path / "o")
    with pytest.raises(CanuError, match=f"{victim}.*corrupt"):
        Trainer(setup_cfg(QUICK, FAST + ["OUTPUT_DIR", str(tmp_path / "o")]))


def test_plugin_log_lines_reach_log_txt(tmp_path):
    import logging
    from canu_plugin.cli import train as train_net
    from fastreid.engine import default_argument_parser
    args = default_argument_parser().parse_args(["--config-file", QUICK, "OUTPUT_DIR", str(tmp_path)])
    train_net.setup(args)
    logging.getLogger("canu_plugin.engine.hooks").info("pseudo-labels: probe line")
    logging.getLogger("canu_plugin.engine.hooks").warning("keeping the pseudo-labels of epoch 3")
    text = (tmp_path / "log.txt").read_text()
    assert "pseudo-labels: probe line" in text and "keeping the pseudo-labels of epoch 3" in text


# ---- resume under 2 processes ---------------------------------------------------------------
def _ddp_train(out, root, epochs, resume):
    set_datasets_root(root)
    cfg = setup_cfg(QUICK, FAST[:4] + ["SOLVER.MAX_EPOCH", str(epochs), "TEST.EVAL_PERIOD", "100",
                                       "SEED", "0", "OUTPUT_DIR", out])
    seed_from_config(cfg)  # as canu-train does: the same clusters in every run of the test
    os.makedirs(out, exist_ok=True)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    model = trainer.unwrapped_model
    rank = torch.distributed.get_rank()
    bn = model.backbone.bn1.running_mean.clone()
    torch.save({"bn1": bn}, os.path.join(out, f"bn_rank{rank}.pt"))


@pytest.mark.timeout(900)
def test_two_process_crash_and_resume_reproduces_the_run(synth_root, tmp_path):
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    launch_watched(_ddp_train, (full, synth_root, 2, False), limit_s=400)
    a = torch.load(os.path.join(full, "bn_rank0.pt"))["bn1"]
    b = torch.load(os.path.join(full, "bn_rank1.pt"))["bn1"]
    assert torch.equal(a, b)  # every rank extracts, evaluates and saves with rank 0's statistics
    shutil.copytree(full, cut)
    with open(os.path.join(cut, "last_checkpoint"), "w") as f:
        f.write("model_0000.pth")  # killed during epoch 1
    os.remove(os.path.join(cut, "final_results.json"))
    launch_watched(_ddp_train, (cut, synth_root, 2, True), limit_s=400)
    x = torch.load(os.path.join(full, "model_final.pth"), weights_only=True)
    y = torch.load(os.path.join(cut, "model_final.pth"), weights_only=True)
    assert torch.equal(x["pseudo_labels"]["labels"], y["pseudo_labels"]["labels"])
    for k in x["model"]:
        assert torch.equal(x["model"][k], y["model"][k]), k
    assert read_final_results(full) == read_final_results(cut)
    ex, ey = epoch_records(full), epoch_records(cut)
    assert [p["num_clusters"] for p in ex["pseudo"]] == [p["num_clusters"] for p in ey["pseudo"]]


# ---- the benchmark ----------------------------------------------------------------------------
def _like_a_terminal():
    """In the child before exec: Ctrl-C's default action, as a terminal's foreground job has it. A shell
    that starts a job in the background (`cmd &`, CI runners, nohup) makes it ignore SIGINT, the children
    inherit that, and Python then installs no KeyboardInterrupt handler: the test must not depend on it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_benchmark_ctrl_c_ends_with_one_line(synth_root, tmp_path):
    tiny = ["INPUT.SIZE_TRAIN", "[32,16]", "INPUT.SIZE_TEST", "[32,16]", "SOLVER.MAX_EPOCH", "50",
            "DATALOADER.NUM_WORKERS", "0"]
    cmd = [sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--methods", "source", "--seeds", "0",
           "--root", synth_root, "--output", str(tmp_path), "--opts", *tiny]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_like_a_terminal)
    log = tmp_path / "synthetic" / "runs" / "source_s0" / "bench_stdout.log"
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and "Starting training" in log.read_text()):
        time.sleep(1)
    assert proc.poll() is None, "the run ended before the Ctrl-C: " + proc.communicate()[1][-2000:]
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("[bench] interrupted: run the same command again to resume")
