"""How a method's target mAP grows with the training budget, and where it levels off.

Input: several seeds' runs of one config, each trained for the longest budget with an evaluation
every few epochs (``TEST.EVAL_PERIOD``); with a constant learning rate the run's first E epochs are
the run of budget E, so one long run per seed gives the whole curve. For each evaluated epoch E:
the mean and sample std of mAP over the seeds, and the paired gain still to come (mAP at the last
epoch - mAP at E, per seed) with its 95% t-interval. The budget chosen is the smallest E whose mean
gain still to come is below ``tolerance`` mAP points.
"""
from canu_plugin.bench.stats import describe, fmt_diff, fmt_mean_sd, paired_difference
from canu_plugin.engine.run_files import epoch_records
from canu_plugin.errors import CanuError


def curve(run_dirs, metric="mAP"):
    """Per evaluated epoch: ``{"epoch", "values": {seed: value}, "stats", "to_come"}``.

    Args:
        run_dirs: {seed: OUTPUT_DIR} of runs of the same config (evaluated at the same epochs).
        metric: a retrieval metric of the evaluation ("mAP", "Rank-1" ...).
    Returns:
        list in epoch order; ``stats``: :func:`~.stats.describe` of the values; ``to_come``:
        :func:`~.stats.paired_difference` (last epoch - this epoch).
    Raises:
        CanuError when a run has no evaluation (train with TEST.EVAL_PERIOD > 0).
    """
    by_epoch = {}
    for seed, out in run_dirs.items():
        evals = [(e["epoch"], e["results"]) for e in epoch_records(out)["epochs"] if "results" in e]
        if not evals:
            raise CanuError(f"{out} has no evaluation in its metrics.json: train it with TEST.EVAL_PERIOD > 0")
        for epoch, results in evals:
            value = next((v for k, v in results.items() if k.rsplit("/", 1)[-1] == metric), None)
            by_epoch.setdefault(epoch, {})[seed] = value
    last = by_epoch[max(by_epoch)]
    return [{"epoch": e, "values": by_epoch[e], "stats": describe(by_epoch[e].values()),
             "to_come": paired_difference(last, by_epoch[e])} for e in sorted(by_epoch)]


def levelled_off(rows, tolerance=1.0):
    """The smallest evaluated epoch whose mean gain still to come is below ``tolerance`` (points)."""
    for row in rows:
        if row["to_come"]["mean"] is not None and row["to_come"]["mean"] < tolerance:
            return row["epoch"]
    return rows[-1]["epoch"]


def curve_table(rows, iters_per_epoch=None, metric="mAP"):
    """Markdown: epoch (and steps), mean ± sd of ``metric``, gain still to come [95% interval]."""
    steps = iters_per_epoch is not None
    head = "| epoch |" + (" steps |" if steps else "") + f" {metric} (mean ± sd) | gain still to come [95% CI] |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        lines.append(f"| {r['epoch']} |" + (f" {r['epoch'] * iters_per_epoch} |" if steps else "")
                     + f" {fmt_mean_sd(r['stats'], 1)} | {fmt_diff(r['to_come'], 1)} |")
    return "\n".join(lines)


__all__ = ["curve", "levelled_off", "curve_table"]
