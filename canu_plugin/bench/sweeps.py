"""The papers' ablations as scripted sweeps: one key, several values, the chosen methods x seeds.

``canu-bench --sweep MODEL.CANU.MU 0.05 0.1 0.3 0.5 1.0 --methods adv canu --seeds 0 1 2`` runs each
method at each value into ``results/<setting>/sweeps/<KEY>/<value>/`` and writes a table and a plot
of mAP, NMI(pseudo-label, camera), lost identities and d_inter against the value, with seed bands.

- A config key is added to the runs' overrides; the source models do not depend on it and are the
  main benchmark's (same seed), and a value equal to a method's own config value is the main
  benchmark's run itself (not trained again).
- ``data.camera_shift`` / ``data.id_camera_correlation`` change the synthetic generator for the
  target only: each value has its own SynthB, adapted to from the main benchmark's source models
  (SynthA as in the main table), so the target's camera regime is the one thing that changes. Without
  a testbed the value's SynthB is ``<root>/sweeps/<knob>_<value>/SynthB``; on a testbed each run seed
  gets its own draw of it (the testbed's target recipe with the knob set), under the value's folder
  ``sweeps/<key>/<value>/datasets/draw_<seed>/``, and the value the testbed itself has is the main table.
- With ``--jobs N`` the sweep's runs go N at once, as the main table's (:mod:`.parallel`): first the main
  table's runs it starts from or reuses, then every value's own runs.
"""
import copy
import os
from dataclasses import replace
from typing import NamedTuple

from canu_plugin.bench.methods import SETTINGS, plan
from canu_plugin.bench.parallel import restore_weights, run_plan, schedule
from canu_plugin.bench.report import load_records
from canu_plugin.bench.runner import run_name
from canu_plugin.bench.testbed import data_key, domain_kwargs, draw_root
from canu_plugin.errors import CanuError

DATA_KNOBS = {"data.camera_shift": "camera_shift", "data.id_camera_correlation": "id_camera_correlation"}
DATA_DEFAULTS = {"data.camera_shift": "0.8", "data.id_camera_correlation": "0.6"}  # synthetic.generate_domain's


class Sweep(NamedTuple):
    """One sweep: ``methods`` run at each of ``values`` of ``key``; ``references``: methods the key does not
    touch (CANU off, ACAN scheme none), taken from the main table at every value, so that each value's
    report has the paired differences of the swept methods against their base."""
    key: str
    values: tuple
    methods: tuple
    references: tuple = ()


# ``make bench``'s sweeps on the synthetic setting
STANDARD = (
    Sweep("MODEL.CANU.MU", ("0.05", "0.1", "0.3", "0.5", "1.0"), ("adv", "canu"), ("pseudo",)),  # CANU-ReID Table III
    Sweep("MODEL.ACAN.LAMBDA", ("0.1", "0.3", "1.0", "3.0"), ("acan_grl", "acan_oce"), ("acan_triplet",)),  # ACAN Fig. 4
    Sweep("MODEL.ACAN.HIDDEN_DIM", ("32", "128", "512"), ("acan_oce",), ("acan_triplet",)),         # ACAN Fig. 5
    Sweep("data.camera_shift", ("0.2", "0.5", "0.8"), ("pseudo", "adv", "canu")),                  # beyond the papers
    Sweep("data.id_camera_correlation", ("0.0", "0.6", "1.0"), ("pseudo", "adv", "canu")),
)


def value_folder(bench, key, value):
    """``results/<setting>/sweeps/<key>/<value>``."""
    return os.path.join(bench.folder, "sweeps", key, str(value))


def config_value(method, key, extra):
    """The value ``key`` has in ``method``'s config with the overrides ``extra`` (a string)."""
    from canu_plugin.engine.setup import setup_cfg
    from canu_plugin.resources import config_path
    cfg = setup_cfg(config_path(method.config, user_paths=False), [*method.opts, *extra], freeze=False)
    node = cfg
    for part in key.split("."):
        if part not in node:
            raise CanuError(f"--sweep {key}: no such config key (see fastreid/config/defaults.py and canu_plugin/config.py)")
        node = node[part]
    return str(node)


def _same(a, b):
    try:
        return float(a) == float(b)
    except ValueError:
        return str(a) == str(b)


def data_default(key, testbed=None):
    """The value data knob ``key`` has in the main table (a string): the testbed's target value when it sets
    one, else the generator's default."""
    if testbed is not None:
        value = {**testbed["domains"], **testbed["target"]}.get(DATA_KNOBS[key])
        if value is not None:
            return str(value)
    return DATA_DEFAULTS[key]


def value_bench(bench, key, value, root):
    """The benchmark whose runs adapt to data knob ``key`` = ``value``: ``bench`` with that value's SynthB
    (generated now when absent) as its dataset root, or on a testbed as each run seed's draw.

    Args:
        bench: :class:`~.runner.Bench` of the main table; root: its dataset root (no testbed).
    Returns:
        a copy of ``bench`` (its ``root`` or ``draws`` replaced).
    """
    from canu_plugin.data.synthetic import generate_domain
    knob, target = DATA_KNOBS[key], SETTINGS[bench.setting]["target"]
    if bench.testbed is None:
        path = os.path.join(root, "sweeps", f"{knob}_{value}")
        generate_domain(path, target, **{knob: float(value)})
        return replace(bench, root=path)
    tb = copy.deepcopy(bench.testbed)
    tb["target"][knob] = float(value)
    draws = {}
    for seed in bench.draws:
        path = draw_root(value_folder(bench, key, value), tb, seed)
        generate_domain(path, target, **domain_kwargs(tb, "target", seed))
        draws[seed] = {"root": path, "key": data_key(tb, seed)}
    return replace(bench, draws=draws)


def split_runs(bench, key, values, methods, seeds):
    """The runs of a sweep: (main, own). ``main``: the main table's runs it starts from (source models) or
    reuses (a method at its own value), :func:`.methods.plan` entries; ``own``: [(value, method, seed,
    deps)] of the runs each value trains."""
    main, own = [], []
    for value in values:
        for name, seed, deps in plan(bench.setting, methods, seeds):
            if name not in methods or _matches_default(bench, key, value, name):
                if (name, seed, deps) not in main:
                    main.append((name, seed, deps))
            else:
                own.append((value, name, seed, deps))
    return main, own


def run_sweep(bench, key, values, methods, seeds, root, jobs=1):
    """Run (or reuse) every (method, value, seed) of a sweep, up to ``jobs`` at once. A sweep reports
    final models only: its own runs evaluate at their config's period (the synthetic configs: the last
    epoch only), without the benchmark's --eval-period curves.

    Args:
        bench: :class:`~.runner.Bench` (its threads and workers :func:`.parallel.run_settings`'s for
            ``jobs``); root: the main dataset root (data knobs without a testbed).
    Returns:
        {value: {(method, seed): record}}.
    """
    if key.startswith("data.") and (key not in DATA_KNOBS or bench.setting != "synthetic"):
        raise CanuError(f"--sweep {key}: the data knobs are {sorted(DATA_KNOBS)}, on the synthetic setting only")
    main, own = split_runs(bench, key, values, methods, seeds)
    run_plan(bench, main, jobs)
    restore_weights(bench, [dep for value, name, seed, deps in own if not os.path.isfile(
        os.path.join(value_folder(bench, key, value), run_name(name, seed) + ".json")) for dep in deps.values()])
    swept = [v for v in values if any(o[0] == v for o in own)]
    benches = {v: value_bench(bench, key, v, root) if key in DATA_KNOBS else bench for v in swept}
    extra = {v: () if key in DATA_KNOBS else (key, str(v)) for v in benches}
    records = {}

    def one(run, cores=None):
        value, name, seed, deps = tasks[(run[0], run[1])]
        stems = {role: run_name(*dep) for role, dep in deps.items()}
        records[(value, name, seed)] = benches[value].ensure(
            name, seed, stems, folder=value_folder(bench, key, value), extra=extra[value],
            deps_folder=bench.folder, eval_period=0)

    tasks = {(f"{name}@{value}", seed): (value, name, seed, deps) for value, name, seed, deps in own}
    runs = [(label, seed, {}) for label, seed in tasks]
    if jobs > 1 and runs:
        bench.log(f"[jobs] sweep {key}: {len(runs)} run(s), up to {jobs} at once")
        schedule(runs, one, jobs, bench.log)
    for run in runs if jobs <= 1 else ():
        one(run)
    out = {v: {} for v in values}
    for value in values:
        for name, seed, deps in plan(bench.setting, methods, seeds):
            if name in methods:
                out[value][(name, seed)] = records.get((value, name, seed)) or bench.ensure(
                    name, seed, {role: run_name(*dep) for role, dep in deps.items()})
    return out


def load_sweep(bench, key, values, references=()):
    """The finished records of a sweep, {value: {(method, seed): record}}: the main benchmark's runs
    where a method's own config has the value, and the ``references``' main runs at every value."""
    out = {}
    main = load_records(bench.folder)
    for value in values:
        records = load_records(value_folder(bench, key, value))
        for (name, seed), rec in main.items():
            if (name, seed) not in records and (name in references or _matches_default(bench, key, value, name)):
                records[(name, seed)] = rec
        out[value] = records
    return out


def _matches_default(bench, key, value, name):
    if key in DATA_KNOBS:
        return _same(value, data_default(key, bench.testbed))
    return name in bench.methods and _same(config_value(bench.methods[name], key, bench.extra), value)


__all__ = ["DATA_KNOBS", "STANDARD", "Sweep", "value_folder", "config_value", "data_default", "value_bench",
           "split_runs", "run_sweep", "load_sweep"]
