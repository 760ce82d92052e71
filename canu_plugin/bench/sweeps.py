"""The papers' ablations as scripted sweeps: one key, several values, the chosen methods x seeds.

``canu-bench --sweep MODEL.CANU.MU 0.05 0.1 0.3 0.5 1.0 --methods adv canu --seeds 0 1 2`` runs each
method at each value into ``results/<setting>/sweeps/<KEY>/<value>/`` and writes a table and a plot
of mAP, NMI(pseudo-label, camera), lost identities and d_inter against the value, with seed bands.

- A config key is added to the runs' overrides; the source models do not depend on it and are the
  main benchmark's (same seed), and a value equal to a method's own config value is the main
  benchmark's run itself (not trained again).
- ``data.camera_shift`` / ``data.id_camera_correlation`` change the synthetic generator for the
  target only: each value has its own SynthB (``<root>/sweeps/<knob>_<value>/SynthB``), adapted to
  from the main benchmark's source models (SynthA as in the main table), so the target's camera
  regime is the one thing that changes.
"""
import contextlib
import os
from typing import NamedTuple

from canu_plugin.bench.methods import SETTINGS, plan
from canu_plugin.bench.report import load_records
from canu_plugin.bench.runner import run_name
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


def _target_root(root, key, value, target):
    """Generate the target domain of a data-knob value (skipped when already there); its root."""
    from canu_plugin.data.synthetic import generate_domain
    path = os.path.join(root, "sweeps", f"{DATA_KNOBS[key]}_{value}")
    generate_domain(path, target, **{DATA_KNOBS[key]: float(value)})
    return path


@contextlib.contextmanager
def _datasets_root(path):
    """``FASTREID_DATASETS`` = ``path`` for the runs started inside (the child processes read it)."""
    before = os.environ.get("FASTREID_DATASETS")
    os.environ["FASTREID_DATASETS"] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FASTREID_DATASETS", None)
        else:
            os.environ["FASTREID_DATASETS"] = before


def _run_value(bench, key, value, methods, seeds, target_root):
    """The runs of one value: {(method, seed): record}. A sweep reports final models only: its own
    runs evaluate at their config's period (the synthetic configs: the last epoch only), without the
    benchmark's --eval-period curves.

    Args:
        target_root: a data knob's dataset root for the swept methods' runs (None: the main root).
    """
    out = {}
    for name, seed, deps in plan(bench.setting, methods, seeds):
        stems = {role: run_name(*dep) for role, dep in deps.items()}
        if _matches_default(bench, key, value, name) or name not in methods:
            record = bench.ensure(name, seed, stems)  # the main benchmark's run (or its source model)
        elif key in DATA_KNOBS:
            with _datasets_root(target_root):
                record = bench.ensure(name, seed, stems, folder=value_folder(bench, key, value),
                                      deps_folder=bench.folder, eval_period=0)
        else:
            record = bench.ensure(name, seed, stems, folder=value_folder(bench, key, value),
                                  extra=(key, str(value)), deps_folder=bench.folder, eval_period=0)
        if name in methods:
            out[(name, seed)] = record
    return out


def run_sweep(bench, key, values, methods, seeds, root):
    """Run (or reuse) every (method, value, seed) of a sweep.

    Returns:
        {value: {(method, seed): record}}.
    """
    if key.startswith("data.") and (key not in DATA_KNOBS or bench.setting != "synthetic"):
        raise CanuError(f"--sweep {key}: the data knobs are {sorted(DATA_KNOBS)}, on the synthetic setting only")
    out = {}
    for value in values:
        target_root = None
        if key in DATA_KNOBS and not _same(value, DATA_DEFAULTS[key]):
            target_root = _target_root(root, key, value, SETTINGS[bench.setting]["target"])
        out[value] = _run_value(bench, key, value, methods, seeds, target_root)
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
        return _same(value, DATA_DEFAULTS[key])
    return name in bench.methods and _same(config_value(bench.methods[name], key, bench.extra), value)


__all__ = ["DATA_KNOBS", "STANDARD", "Sweep", "value_folder", "config_value", "run_sweep", "load_sweep"]
