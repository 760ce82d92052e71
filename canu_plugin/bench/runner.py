"""Run one benchmark run (a method, a seed) with ``canu-train`` (``python -m canu_plugin.cli.train``,
= ``tools/train_net.py``) in its own process, and collect what it wrote into one JSON record.

Layout under ``results/<setting>/``: ``runs/<method>_s<seed>/`` is the run's fast-reid output
folder (checkpoints, logs, plots); ``<method>_s<seed>.json`` is written last, when the run has
finished, so its presence marks a finished run (a re-started sweep skips it, and an interrupted
run resumes from its last checkpoint with ``--resume``). A finished run keeps only its
``model_final.pth`` of the checkpoints.
"""
import json
import os
import subprocess
import sys
import time

from canu_plugin.errors import CanuError
from canu_plugin.jsonl import read_jsonl
from canu_plugin.resources import config_path


def run_name(method, seed):
    """File stem of a run: ``<method>_s<seed>``."""
    return f"{method}_s{seed}"


def seed_opts(seed):
    """Config overrides that fix every random choice of a run from one integer."""
    return ["SEED", str(seed), "PSEUDO.SEED", str(seed * 1000), "CLUSTERING.SEED", str(seed),
            "MODEL.ACAN.SAMPLER_SEED", str(seed)]


def run_opts(key, method, seed, deps, folder, eval_period=0, extra=()):
    """``KEY VALUE`` list for train_net: seeds, output folder, initial weights, evaluation period.

    Args:
        key: the method's name; method: :class:`~canu_plugin.bench.methods.Method`;
        deps: {role: run stem} of finished runs.
        folder: results/<setting>; eval_period: > 0 evaluates every that many epochs (the mAP
            curves), for the adapting methods only; extra: user overrides (same for every run).
    """
    opts = list(method.opts) + seed_opts(seed)
    weights = {role: os.path.join(folder, "runs", stem, "model_final.pth") for role, stem in deps.items()}
    if method.init == "source":
        opts += ["MODEL.WEIGHTS", weights["source"]]
    elif method.init == "source_pair":
        opts += ["MODEL.MMT.SOURCE_WEIGHTS", f'["{weights["source"]}", "{weights["source_b"]}"]']
    if eval_period > 0 and method.family in ("clustering", "mmt", "ssg", "acan"):
        opts += ["TEST.EVAL_PERIOD", str(eval_period)]
    return opts + list(extra) + ["OUTPUT_DIR", os.path.join(folder, "runs", run_name(key, seed))]


def _last_per_epoch(records):
    """A resumed run logs some epochs twice: keep the last record of each epoch, in epoch order."""
    by_epoch = {}
    for r in records:
        by_epoch[r["epoch"]] = {**by_epoch.get(r["epoch"], {}), **r}
    return [by_epoch[e] for e in sorted(by_epoch)]


def collect(out_dir, target):
    """Everything a run wrote that the report uses.

    Returns:
        dict: ``final`` (target-set metrics of the last evaluation), ``epochs`` (run log),
        ``pseudo`` (clustering log), ``disc`` (discriminator log), ``acan`` (ACAN diagnostics),
        ``plots`` (PNG paths).
    """
    epochs = _last_per_epoch(read_jsonl(os.path.join(out_dir, "run_log.jsonl")))
    evaluated = [e for e in epochs if "results" in e]
    if not evaluated or target not in evaluated[-1]["results"]:
        raise CanuError(f"{out_dir}: the run logged no evaluation on {target} (run_log.jsonl)")
    plots = {"pca": os.path.join(out_dir, "eval", target, "pca_cam1_cam2.png")}
    acan = read_jsonl(os.path.join(out_dir, "acan_diagnostics.jsonl"))
    if acan and acan[-1].get("confusion_png"):
        plots["confusion"] = acan[-1]["confusion_png"]
    return {"final": evaluated[-1]["results"][target], "epochs": epochs,
            "pseudo": _last_per_epoch(read_jsonl(os.path.join(out_dir, "pseudo_labels.jsonl"))),
            "disc": _last_per_epoch(read_jsonl(os.path.join(out_dir, "discriminator.jsonl"))),
            "acan": acan, "plots": {k: v for k, v in plots.items() if os.path.isfile(v)}}


def _drop_periodic_checkpoints(out_dir):
    """A finished run needs only ``model_final.pth`` (what later runs start from): delete fast-reid's
    per-epoch ``model_XXXX.pth`` (tens of MB each, one per epoch and run)."""
    for name in os.listdir(out_dir):
        if name.startswith("model_") and name.endswith(".pth") and name != "model_final.pth":
            os.remove(os.path.join(out_dir, name))


def execute(setting, key, method, seed, deps, folder, target, eval_period=0, extra=(), log=print):
    """Train (or resume) one run in a child process and write its JSON record.

    Returns:
        the record (dict). Raises CanuError when the run fails (its log file is named).
    """
    opts = run_opts(key, method, seed, deps, folder, eval_period, extra)
    out_dir = opts[-1]
    os.makedirs(out_dir, exist_ok=True)
    cmd = [sys.executable, "-m", "canu_plugin.cli.train", "--config-file",
           config_path(method.config, user_paths=False), "--resume", *opts]
    log(f"[bench] {run_name(key, seed)}: {method.label}")
    t0 = time.time()
    with open(os.path.join(out_dir, "bench_stdout.log"), "a") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise CanuError(f"run {run_name(key, seed)} failed (exit {proc.returncode}); see "
                        f"{os.path.join(out_dir, 'bench_stdout.log')}")
    record = {"setting": setting, "method": key, "seed": seed, "label": method.label, "family": method.family,
              "target": target, "config": method.config, "opts": opts, "wall_s": round(wall, 1), **collect(out_dir, target)}
    path = os.path.join(folder, run_name(key, seed) + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)
    _drop_periodic_checkpoints(out_dir)
    log(f"[bench] {run_name(key, seed)} done in {wall:.0f} s: mAP {record['final']['mAP']:.1f}")
    return record
