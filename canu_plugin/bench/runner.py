"""Run one benchmark run (a method, a seed) with ``canu-train`` (``python -m canu_plugin.cli.train``,
= ``tools/train_net.py``) in its own process, and collect what it wrote into one JSON record.

Layout under ``results/<setting>/``: ``runs/<method>_s<seed>/`` is the run's fast-reid output
folder (checkpoints, logs, plots); ``<method>_s<seed>.json`` is written last, when the run has
finished, so its presence marks a finished run (a re-started sweep skips it, and an interrupted
run resumes from its last checkpoint with ``--resume``). A finished run keeps only its
``model_final.pth``, without the optimizers' states (:func:`keep_final_weights`).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch

from canu_plugin.bench.child_settings import child_settings, upgrade_marker, with_legacy
from canu_plugin.bench.methods import SETTINGS, benchmark_seed
from canu_plugin.checkpoint import atomic_write, link_or_copy
from canu_plugin.errors import CanuError
from canu_plugin.engine.run_files import FINAL_RESULTS, epoch_records, read_final_results
from canu_plugin.jsonl import read_jsonl
from canu_plugin.resources import config_path


def run_name(method, seed):
    """File stem of a run: ``<method>_s<seed>``."""
    return f"{method}_s{seed}"


def seed_opts(seed):
    """Config overrides that fix every random choice of a run from one integer."""
    return ["SEED", str(seed), "PSEUDO.SEED", str(seed * 1000), "CLUSTERING.SEED", str(seed),
            "MODEL.ACAN.SAMPLER_SEED", str(seed)]


def run_opts(key, method, seed, deps, folder, eval_period=0, extra=(), deps_folder=None):
    """``KEY VALUE`` list for train_net: seeds, output folder, initial weights, evaluation period.

    Args:
        key: the method's name; method: :class:`~canu_plugin.bench.methods.Method`;
        deps: {role: run stem} of finished runs, in ``deps_folder`` (default ``folder``).
        folder: where the run goes (results/<setting>, or a sweep value's folder);
        eval_period: > 0 evaluates every that many epochs (the mAP curves), for the adapting
            methods only; extra: overrides added last (the user's, a sweep's value).
    """
    opts = list(method.opts) + seed_opts(seed)
    deps_folder = deps_folder or folder
    weights = {role: os.path.join(deps_folder, "runs", stem, "model_final.pth") for role, stem in deps.items()}
    if method.init == "source":
        opts += ["MODEL.WEIGHTS", weights["source"]]
    elif method.init == "source_pair":
        opts += ["MODEL.MMT.SOURCE_WEIGHTS", f'["{weights["source"]}", "{weights["source_b"]}"]']
    if eval_period > 0 and method.family in ("clustering", "mmt", "ssg", "acan", "usl"):
        opts += ["TEST.EVAL_PERIOD", str(eval_period)]
    return opts + list(extra) + ["OUTPUT_DIR", os.path.join(folder, "runs", run_name(key, seed))]


def collect(out_dir, target):
    """Everything a run wrote that the report uses (:mod:`canu_plugin.engine.run_files`).

    Returns:
        dict: ``final`` (the final model's metrics on ``target``, from final_results.json),
        ``epochs`` (per finished epoch: train_s, discriminator means, evaluation results),
        ``pseudo`` (per clustering), ``acan`` (ACAN diagnostics), ``plots`` (PNG paths).
    """
    final = read_final_results(out_dir)
    if final is None or target not in final["results"]:
        raise CanuError(f"{out_dir}: the run has no final evaluation on {target} ({FINAL_RESULTS}); "
                        "it did not finish: run the same command again to resume it")
    records = epoch_records(out_dir)
    plots = {"pca": os.path.join(out_dir, "eval", target, "pca_cam1_cam2.png")}
    acan = list({r["epoch"]: r for r in read_jsonl(os.path.join(out_dir, "acan_diagnostics.jsonl"))}.values())
    if acan and acan[-1].get("confusion_png"):
        plots["confusion"] = acan[-1]["confusion_png"]
    return {"final": final["results"][target], "epochs": records["epochs"], "pseudo": records["pseudo"],
            "acan": acan, "plots": {k: v for k, v in plots.items() if os.path.isfile(v)}}


def keep_final_weights(out_dir):
    """A finished run needs only its final model (what later runs start from, and what a re-run after
    a lost record evaluates): delete fast-reid's per-epoch ``model_XXXX.pth`` and rewrite
    ``model_final.pth`` without the optimizers' states (two thirds of the file with Adam), atomically.

    Returns:
        the bytes freed (int).
    """
    freed = 0
    for name in os.listdir(out_dir):
        if name.startswith("model_") and name.endswith(".pth") and name != "model_final.pth":
            freed += os.path.getsize(os.path.join(out_dir, name))
            os.remove(os.path.join(out_dir, name))
    final = os.path.join(out_dir, "model_final.pth")
    if os.path.isfile(final):
        data = torch.load(final, map_location="cpu", weights_only=True)
        dropped = [k for k in data if k == "optimizer" or k.endswith("_optimizer")]
        if dropped:
            before = os.path.getsize(final)
            atomic_write(final, lambda f: torch.save({k: v for k, v in data.items() if k not in dropped}, f))
            freed += before - os.path.getsize(final)
    return freed


def identity(method, opts, base):
    """What makes a run this run: its config and its effective overrides (paths under the benchmark's
    folder ``base`` written as ``<output>``, so that a results folder can be moved). :class:`Bench` adds
    ``threads`` and ``workers`` (:func:`child_settings`), and a testbed's ``data``."""
    return {"config": method.config, "opts": [str(o).replace(base, "<output>") for o in opts[:-2]]}


def check_identity(recorded, planned, where, legacy=None):
    """Refuse to reuse a run made with other options (its numbers would be labelled with these), or with
    other threads / loader workers (its numbers would differ); ``legacy``: the settings of a record that
    has none (:func:`child_settings`)."""
    recorded = with_legacy(recorded, legacy)
    if recorded != planned:
        was = recorded if isinstance(recorded, dict) else {}
        changed = sorted(set(map(str, planned["opts"])) ^ set(map(str, was.get("opts") or [])))[:6]
        changed += [f"{k} {was.get(k)} -> {planned.get(k)}" for k in ("config", "data", "threads", "workers")
                    if was.get(k) != planned.get(k)]
        fix = ("; threads / workers follow --jobs and OMP_NUM_THREADS: use those of that run" if
               any(was.get(k) != planned.get(k) for k in ("threads", "workers")) else "")
        raise CanuError(f"{where} was run with other options than this command's (differing: {changed}): use "
                        f"another --output for these options, or delete that run to redo it{fix}")


@dataclass
class Bench:
    """One benchmark: its setting, folder (results/<setting>), evaluation period, the user's
    overrides and a log function; :meth:`ensure` gives the record of any of its runs."""
    setting: str
    folder: str
    eval_period: int = 0
    extra: tuple = ()
    log: Callable = print
    per_method: dict = None  # {method: overrides} after ``extra`` (a testbed's budget, pre-trained weights)
    donors: tuple = ()  # other benchmark folders of the same data and backbone (:func:`adopt`)
    draws: dict = None  # {seed: {"root", "key"}}: a testbed's own data draw per run seed (None: one dataset root)
    testbed: dict = None  # the testbed those draws are of (:func:`.testbed.load_testbed`), for the data sweeps
    root: str = None  # without draws, the dataset root of every run (None: this process's FASTREID_DATASETS)
    threads: int = None  # each run's torch threads (--jobs N > 1: its share of the cores); None: the environment's
    workers: int = None  # each run's loader workers (--jobs N > 1: 0); None: its config's DATALOADER.NUM_WORKERS

    @property
    def methods(self):
        return SETTINGS[self.setting]["methods"]

    def ensure(self, key, seed, deps, folder=None, extra=(), deps_folder=None, eval_period=None):
        """The record of run (``key``, ``seed``) in ``folder`` (default: the benchmark's): the finished
        one when it was made with the same options, threads and loader workers (else CanuError; a record
        from before these were recorded: :func:`child_settings`), otherwise trained now.

        Args:
            deps: {role: run stem}, in ``deps_folder`` (default ``folder``); extra: overrides after the user's;
            eval_period: None = the benchmark's (a sweep's runs: 0, the final model only).
        """
        folder = folder or self.folder
        method = self.methods[key]
        period = self.eval_period if eval_period is None else eval_period
        own = (self.per_method or {}).get(key, ())
        opts = run_opts(key, method, seed, deps, folder, period, [*self.extra, *own, *extra], deps_folder)
        planned = identity(method, opts, self.folder)
        env = None
        if self.draws is not None:  # the run trains and tests on its seed's draw; its identity says which
            draw = benchmark_seed(key, seed)  # MMT's second source model: its benchmark seed's draw
            if draw not in self.draws:
                raise CanuError(f"seed {draw} has no data draw prepared in {self.folder}: prepare the testbed "
                                "with every seed it runs")
            planned["data"] = self.draws[draw]["key"]
            env = {**os.environ, "FASTREID_DATASETS": self.draws[draw]["root"]}
        elif self.root is not None:
            env = {**os.environ, "FASTREID_DATASETS": self.root}
        settings, legacy, env, opts = child_settings(method.config, opts, env, self.threads, self.workers)
        planned.update(settings)
        path = os.path.join(folder, run_name(key, seed) + ".json")
        if os.path.isfile(path):
            with open(path) as f:
                record = json.load(f)
            check_identity(record.get("identity"), planned, path, legacy)
            return record
        if folder == self.folder:
            record = adopt(self.donors, run_name(key, seed), planned, folder, self.log, tuple(deps.values()), legacy)
            if record is not None:
                return record
        upgrade_marker(opts[-1], planned, legacy)
        return execute(self.setting, key, method, seed, opts, planned, folder, self.log, env)

    def finished(self, key, seed):
        """Whether run (``key``, ``seed``) of the benchmark's folder has its record (made with whatever options)."""
        return os.path.isfile(os.path.join(self.folder, run_name(key, seed) + ".json"))


def _record(folder, stem):
    """The record of finished run ``stem`` in benchmark ``folder`` (None when it has none)."""
    path = os.path.join(folder, stem + ".json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def adopt(donors, stem, planned, folder, log=print, deps=(), legacy=None):
    """Reuse a finished run of another benchmark folder made with the same options (``planned``
    identity: config and overrides, paths written as ``<output>``) on the same data, from the same
    starting models: its run folder is hard-linked (copied where links fail) into ``folder`` and its
    record re-pointed there.

    Args:
        donors: folders whose datasets and pre-trained backbone are this folder's (a testbed whose
            knobs differ only in budget or overrides); stem: ``<method>_s<seed>``; deps: the stems of
            the runs it starts from (source models), which must have the same identity in both folders;
            legacy: the settings of a donor record that has none (:func:`child_settings`).
    Returns:
        the adopted record (dict), or None when no donor has that run with those options.
    """
    ours = {d: (_record(folder, d) or {}).get("identity") for d in deps}
    for donor in donors:
        record = _record(donor, stem)
        if record is None or with_legacy(record.get("identity"), legacy) != planned:
            continue
        if any(ours[d] is None or ours[d] != (_record(donor, d) or {}).get("identity") for d in deps):
            continue  # same options, but started from another source model
        run_dir = os.path.join(folder, "runs", stem)
        shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run of ours, if any
        shutil.copytree(os.path.join(donor, "runs", stem), run_dir, copy_function=link_or_copy)
        text = json.dumps(record, indent=1).replace(json.dumps(donor)[1:-1], json.dumps(folder)[1:-1])
        atomic_write(os.path.join(folder, stem + ".json"), lambda f: f.write(text), mode="w")
        log(f"[bench] {stem}: reused from {donor} (same data, backbone and options)")
        return json.loads(text)
    return None


_CHILDREN = set()  # the training processes running now (:func:`stop_children`)
_CHILDREN_LOCK = threading.Lock()


def train_child(config, opts, log_path, env=None, eval_only=False):
    """``canu-train --config-file <config> --resume <opts>`` (``eval_only``: ``--eval-only``) in a child process,
    its output appended to ``log_path``; ``env``: the child's environment (default this one's). Returns (exit code,
    seconds). The child inherits the CPU affinity of the thread that starts it (:mod:`.parallel` pins its threads)."""
    cmd = [sys.executable, "-m", "canu_plugin.cli.train", "--config-file", config_path(config, user_paths=False),
           "--eval-only" if eval_only else "--resume", *opts]
    t0 = time.time()
    with open(log_path, "a") as f, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env) as proc:
        with _CHILDREN_LOCK:
            _CHILDREN.add(proc)
        try:
            proc.wait()
        except BaseException:  # Ctrl-C here (one run at a time): as subprocess.run, kill the child
            proc.kill()
            raise
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.discard(proc)
    return proc.returncode, time.time() - t0


def stop_children(grace=0.25):
    """Interrupt the training processes started by :func:`train_child` that are still running (SIGINT, as a
    Ctrl-C in the terminal sends them), and kill those still there after ``grace`` seconds (what
    subprocess.run does to its child on Ctrl-C, as one run at a time does). Their last checkpoints stay:
    an interrupted run resumes from there."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.time() + grace
    for proc in children:
        try:
            proc.wait(max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()


def execute(setting, key, method, seed, opts, planned, folder, log=print, env=None):
    """Train (or resume) one run in a child process and write its JSON record (``folder/<stem>.json``);
    ``env``: the child's environment (default this process's: its FASTREID_DATASETS is the dataset root).

    Returns:
        the record (dict). Raises CanuError when the run fails (its log file is named) or when its
        run folder holds a run made with other options.
    """
    out_dir = opts[-1]
    os.makedirs(out_dir, exist_ok=True)
    marker = os.path.join(out_dir, "bench_run.json")
    if os.path.isfile(marker):
        with open(marker) as f:
            check_identity(json.load(f), planned, out_dir)
    else:
        with open(marker, "w") as f:
            json.dump(planned, f, indent=1)
    log(f"[bench] {os.path.relpath(out_dir, folder)}: {method.label}")
    code, wall = train_child(method.config, opts, os.path.join(out_dir, "bench_stdout.log"), env)
    if code != 0:
        raise CanuError(f"run {run_name(key, seed)} failed (exit {code}); see "
                        f"{os.path.join(out_dir, 'bench_stdout.log')}")
    target = SETTINGS[setting]["target"]
    record = {"setting": setting, "method": key, "seed": seed, "label": method.label, "family": method.family,
              "target": target, "identity": planned, "wall_s": round(wall, 1), **collect(out_dir, target)}
    path = os.path.join(folder, run_name(key, seed) + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)
    keep_final_weights(out_dir)
    log(f"[bench] {run_name(key, seed)} done in {wall:.0f} s: mAP {record['final']['mAP']:.1f}")
    return record
