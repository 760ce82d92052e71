"""Prepare a testbed (its data and pre-trained backbone) and run a candidate's criteria rows.

``prepare`` is the benchmark stage every use of a testbed goes through (``canu-bench --testbed``,
``tools/testbed_candidates.py``): generate SynthA / SynthB with the testbed's knobs under
``<folder>/datasets``, pre-train its backbone once (cached, :mod:`.pretrain`; a sibling testbed's
backbone of the same provenance is hard-linked instead) and give each method its overrides. ``run_candidate`` then trains only the rows not under test (:data:`.criteria.ROWS`) and
scores the criteria (:func:`.criteria.criteria`).
"""
import glob
import json
import os
import time

from canu_plugin.bench import criteria as crit
from canu_plugin.bench.methods import SETTINGS, plan
from canu_plugin.bench.parallel import run_plan, run_settings
from canu_plugin.bench.pretrain import ensure_pretrained
from canu_plugin.bench.report import load_records
from canu_plugin.bench.runner import Bench
from canu_plugin.bench.testbed import data_key, draw_root, fingerprint, generate_data, knobs, method_opts
from canu_plugin.errors import CanuError

SETTING = "synthetic"


def testbed_folder(output, tb):
    """``<output>/testbeds/<name>-<hash of the knobs>``: a changed knob never reuses another's runs (nor does
    a testbed of one draw per seed reuse the runs of the same knobs on one draw for every seed)."""
    key = knobs(tb) if tb["seed"] is not None else {**knobs(tb), "draws": "per run seed"}
    return os.path.join(os.path.abspath(output), "testbeds", f"{tb['name']}-{fingerprint(key)}")


def prepare(tb, folder, seeds=(0,), log=print):
    """Data and pre-trained backbone of testbed ``tb`` for a benchmark in ``folder``.

    Args:
        seeds: the run seeds to prepare: each draws its own SynthA / SynthB (:func:`~.testbed.data_seed`).
    Returns:
        dict: root (the first seed's dataset root, also set as FASTREID_DATASETS for this process),
        draws ({run seed: {"root", "key"}}: each seed's dataset root and data key, for
        :class:`~.runner.Bench`), per_method ({method: overrides}), pretrain (None or
        :func:`~.pretrain.ensure_pretrained`'s dict, with the pre-training's wall time), data_s, donors
        (sibling testbed folders with the same data recipe and backbone, whose finished runs of the same
        options and draw are reused: :func:`~.runner.adopt`).
    """
    t0 = time.time()
    draws = {}
    for seed in seeds:
        root = draw_root(folder, tb, seed)
        generate_data(tb, root, seed)
        draws[seed] = {"root": root, "key": data_key(tb, seed)}
    data_s = time.time() - t0
    siblings = sorted(glob.glob(os.path.join(os.path.dirname(folder), "*")))  # other testbeds: same backbone?
    pre_root = os.path.join(folder, "datasets")  # the pre-training domains, shared by every draw
    pre = ensure_pretrained(folder, tb["pretrain"], pre_root, tb["input_size"], log, siblings) if tb["pretrain"] else None
    first = draws[seeds[0]]["root"] if seeds else pre_root
    os.environ["FASTREID_DATASETS"] = first
    path = pre["path"] if pre else None
    per_method = {m: tuple(method_opts(tb, m, path)) for m in SETTINGS[SETTING]["methods"]}
    key = {"data": data_key(tb), "pretrain": os.path.relpath(path, folder) if path else None}
    with open(os.path.join(folder, "data_key.json"), "w") as f:
        json.dump(key, f)
    return {"root": first, "draws": draws, "per_method": per_method, "pretrain": pre, "data_s": data_s,
            "donors": tuple(d for d in siblings if d != folder and _key(d) == key)}


def _key(folder):
    """The ``data_key.json`` a prepared testbed folder holds (None before its first prepare)."""
    path = os.path.join(folder, "data_key.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_candidate(tb, output, seeds, methods=crit.ROWS, extra=(), log=print, eval_period=2, jobs=1):
    """Train (or reuse) the criteria rows of testbed ``tb`` for ``seeds`` and score them.

    Args:
        output: results folder (the testbed's runs go in :func:`testbed_folder`); methods: a subset
            of :data:`.criteria.ROWS` (anything else is refused); extra: overrides for every run;
            eval_period: canu-bench's default, so that ``canu-bench --testbed`` reuses these runs;
            jobs: up to that many runs at once (:mod:`.parallel`; ``canu-bench --testbed`` reuses them with the
            same ``--jobs``).
    Returns:
        dict: folder, rows (:func:`.criteria.criteria`), verdict, pretrain_s, runs_s, records.
    """
    crit.check_rows(methods)
    if not seeds:
        raise CanuError("the testbed search needs at least one seed (--seeds 0 1 2)")
    folder = testbed_folder(output, tb)
    os.makedirs(folder, exist_ok=True)
    stage = prepare(tb, folder, seeds, log)
    bench = Bench(SETTING, folder, eval_period, tuple(extra), log, stage["per_method"], stage["donors"], stage["draws"],
                  **run_settings(jobs))
    run_plan(bench, plan(SETTING, list(methods), seeds), jobs)
    records = {k: r for k, r in load_records(folder).items() if k[1] in seeds}
    rows = crit.criteria(records)
    pre = stage["pretrain"]
    return {"folder": folder, "rows": rows, "verdict": crit.verdict(rows), "records": records,
            "pretrain_s": pre["wall_s"] if pre else 0.0, "runs_s": sum(r.get("wall_s", 0.0) for r in records.values())}


def append_log(path, line):
    """Append ``line`` to the candidate log ``path`` (a markdown file whose last section is the table;
    the header is written first when the file has none)."""
    text = open(path).read() if os.path.isfile(path) else ""
    if crit.LOG_HEADER not in text:
        sep = "|" + "---|" * (crit.LOG_HEADER.count("|") - 1)
        text = text.rstrip("\n") + ("\n\n" if text else "") + crit.LOG_HEADER + "\n" + sep + "\n"
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n" + line + "\n")


__all__ = ["SETTING", "testbed_folder", "prepare", "run_candidate", "append_log"]
