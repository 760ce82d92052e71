"""What a finished run leaves in its OUTPUT_DIR for the benchmark and for users, and how to read it.

- ``final_results.json`` (written last, atomically, by :meth:`Trainer.train`): the evaluation of the
  run's final model, ``{"epoch": E, "weights": "model_final.pth", "results": {dataset: {metric: value}}}``.
  It is re-created from the final weights when a run is resumed after its last epoch, so it always
  describes the final model, whatever happened before.
- ``metrics.json`` (fast-reid's JSONWriter; TensorBoard's event file holds the same scalars): every
  per-epoch value as a scalar; :func:`epoch_records` groups them by epoch (a resumed run writes an
  epoch again: the last write wins).
"""
import json
import os

import numpy as np

from canu_plugin.checkpoint import atomic_write
from canu_plugin.jsonl import read_jsonl

FINAL_RESULTS = "final_results.json"
RETRIEVAL_METRICS = ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP")  # keys "mAP" (one test set) or "<dataset>/mAP"


def _numbers(metrics):
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}


def write_final_results(out_dir, results, epoch, test_names, weights="model_final.pth"):
    """Write ``out_dir/final_results.json`` (atomically).

    Args:
        results: fast-reid's test results: {metric: value} for one test set, {dataset: {...}} for several.
        epoch: epochs trained; test_names: ``DATASETS.TESTS``; weights: the evaluated checkpoint's file name.
    """
    if results and all(not isinstance(v, dict) for v in results.values()):
        results = {test_names[0]: results}
    record = {"epoch": int(epoch), "weights": weights,
              "results": {ds: _numbers(m) for ds, m in (results or {}).items()}}
    atomic_write(os.path.join(out_dir, FINAL_RESULTS), lambda f: f.write(json.dumps(record, indent=1)), mode="w")


def read_final_results(out_dir):
    """The final-results record of a run, or None when the run has not finished."""
    path = os.path.join(out_dir, FINAL_RESULTS)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def epoch_records(out_dir):
    """The per-epoch scalars of ``out_dir/metrics.json``, by kind.

    Returns:
        dict with ``"pseudo"``: one dict per clustering (``pseudo/*`` scalars without the prefix,
        "epoch" = 0-based epoch), ``"epochs"``: one dict per finished epoch ("epoch" = epochs finished,
        "train_s", the ``adv/epoch_*`` means, and ``"results"``: the evaluation's retrieval metrics
        when it evaluated, keyed as fast-reid flattens them: "mAP" or "<dataset>/mAP"),
        each list in epoch order with the last write of an epoch kept.
    """
    pseudo, epochs = {}, {}
    for line in read_jsonl(os.path.join(out_dir, "metrics.json")):
        if "pseudo/epoch" in line:
            rec = {k[len("pseudo/"):]: v for k, v in line.items() if k.startswith("pseudo/")}
            pseudo[int(rec["epoch"])] = rec
        metrics = {k: v for k, v in line.items() if k.rsplit("/", 1)[-1] in RETRIEVAL_METRICS}
        if "epoch" not in line and not (metrics and epochs):
            continue
        epoch = int(line["epoch"]) if "epoch" in line else max(epochs)  # an evaluation after the last epoch
        rec = {"epoch": epoch, **{k[len("adv/epoch_"):]: v for k, v in line.items() if k.startswith("adv/epoch_")}}
        if "time/epoch_train_s" in line:
            rec["train_s"] = line["time/epoch_train_s"]
        if metrics:
            rec["results"] = metrics
        epochs[epoch] = {**epochs.get(epoch, {}), **rec}
    return {"pseudo": [pseudo[e] for e in sorted(pseudo)], "epochs": [epochs[e] for e in sorted(epochs)]}


__all__ = ["FINAL_RESULTS", "write_final_results", "read_final_results", "epoch_records"]
