"""``canu-bench --re-evaluate``: the final model of every finished run evaluated again with this version's
evaluator, and the metrics its record lacks (e.g. ``mAP_cn``, ``cam_nmi``) added to it. Nothing is trained;
a record's own numbers are kept, and checked against the new evaluation (the same model, data, threads and
loader workers must give the same mAP).
"""
import json
import os

from canu_plugin.bench.child_settings import child_settings
from canu_plugin.bench.methods import SETTINGS, benchmark_seed
from canu_plugin.bench.runner import run_name, train_child
from canu_plugin.checkpoint import atomic_write
from canu_plugin.engine.run_files import read_final_results
from canu_plugin.errors import CanuError

FOLDER = "re-evaluated"  # under the run's folder: the evaluation's output (its log, final_results.json)
MAP_TOLERANCE = 1e-4  # mAP points: more than this between the record and the new evaluation is reported


def _child(bench, record, out_dir):
    """(config, opts, env) of the evaluation of ``record``'s final model, with the record's threads and workers."""
    identity = record["identity"]
    opts = [str(o).replace("<output>", bench.folder) for o in identity["opts"]]
    opts += ["MODEL.WEIGHTS", os.path.join(os.path.dirname(out_dir), "model_final.pth"), "OUTPUT_DIR", out_dir]
    env = {**os.environ}
    if bench.draws is not None:
        env["FASTREID_DATASETS"] = bench.draws[benchmark_seed(record["method"], record["seed"])]["root"]
    elif bench.root is not None:
        env["FASTREID_DATASETS"] = bench.root
    _, _, env, opts = child_settings(identity["config"], opts, env, identity.get("threads"), identity.get("workers"))
    return identity["config"], opts, env


def re_evaluate_run(bench, key, seed):
    """Evaluate run (``key``, ``seed``)'s final model again and add the new metrics to its record.

    Returns:
        the names of the metrics added (list), or None when the run has no record or no final weights (logged).
    Raises:
        CanuError: the evaluation failed (its log is named).
    """
    stem = run_name(key, seed)
    path = os.path.join(bench.folder, stem + ".json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    run_dir = os.path.join(bench.folder, "runs", stem)
    if not os.path.isfile(os.path.join(run_dir, "model_final.pth")):
        bench.log(f"[re-evaluate] {stem}: no model_final.pth in {run_dir}; skipped (train it again to evaluate it)")
        return None
    out_dir = os.path.join(run_dir, FOLDER)
    os.makedirs(out_dir, exist_ok=True)
    config, opts, env = _child(bench, record, out_dir)
    code, wall = train_child(config, opts, os.path.join(out_dir, "stdout.log"), env, eval_only=True)
    final = read_final_results(out_dir)
    target = SETTINGS[bench.setting]["target"]
    if code != 0 or final is None or target not in final["results"]:
        raise CanuError(f"re-evaluating {stem} failed (exit {code}); see {os.path.join(out_dir, 'stdout.log')}")
    new = final["results"][target]
    if abs(new["mAP"] - record["final"]["mAP"]) > MAP_TOLERANCE:
        bench.log(f"[re-evaluate] {stem}: mAP {new['mAP']:.4f} now, {record['final']['mAP']:.4f} recorded; the "
                  "record's numbers are kept (another evaluator version, or other threads?)")
    added = [k for k in new if k not in record["final"]]
    record["final"].update({k: new[k] for k in added})
    text = json.dumps(record, indent=1)
    atomic_write(path, lambda f: f.write(text), mode="w")
    bench.log(f"[re-evaluate] {stem}: {wall:.0f} s, added {', '.join(added) or 'nothing'}")
    return added


def re_evaluate(bench, methods, seeds):
    """:func:`re_evaluate_run` for every finished run of ``methods`` x ``seeds``. Returns the number evaluated."""
    return sum(re_evaluate_run(bench, key, seed) is not None for seed in seeds for key in methods)


__all__ = ["FOLDER", "re_evaluate_run", "re_evaluate"]
