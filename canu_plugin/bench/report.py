"""The benchmark's markdown table: one row per method, mean and spread over the seeds run."""
import glob
import json
import os

import numpy as np

# (column header, function of a run record -> float or None, decimals)
COLUMNS = [
    ("mAP", lambda r: r["final"].get("mAP"), 1),
    ("R1", lambda r: r["final"].get("Rank-1"), 1),
    ("R5", lambda r: r["final"].get("Rank-5"), 1),
    ("mINP", lambda r: r["final"].get("mINP"), 1),
    ("MI(pseudo, cam)", lambda r: r["pseudo"][-1].get("mi_cam") if r["pseudo"] else None, 3),
    ("cam probe %", lambda r: r["final"].get("cam_probe"), 1),
    ("d_inter", lambda r: r["final"].get("d_inter"), 3),
    ("lost ids", lambda r: r["pseudo"][-1].get("lost_ids") if r["pseudo"] else None, 1),
    ("D acc", lambda r: r["epochs"][-1].get("disc_acc") if r["epochs"] else None, 2),
    ("train s/epoch", lambda r: _mean([e.get("train_s") for e in r["epochs"]]), 1),
    ("clustering s/epoch", lambda r: _mean([p.get("extract_s", 0) + p.get("cluster_s", 0) for p in r["pseudo"]])
     if r["pseudo"] else None, 1),
]


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def load_records(folder):
    """Every finished run's JSON record under ``folder`` ({(method, seed): record})."""
    records = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        if "method" in r and "seed" in r:
            records[(r["method"], r["seed"])] = r
    return records


def cell(values, decimals):
    """'mean ± std' over seeds (population std), 'mean' for one seed, '-' for none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{np.mean(values):.{decimals}f} ± {np.std(values):.{decimals}f}"


def summary(records, methods):
    """{method: {column: (mean, std, n)}} for the methods that have finished runs."""
    out = {}
    for m in methods:
        runs = [r for (name, _), r in sorted(records.items()) if name == m]
        if runs:
            out[m] = {h: _stats([fn(r) for r in runs]) for h, fn, _ in COLUMNS}
    return out


def _stats(values):
    values = [v for v in values if v is not None]
    return (float(np.mean(values)), float(np.std(values)), len(values)) if values else (None, None, 0)


def markdown_table(records, methods):
    """The table (github markdown): method, seeds, then :data:`COLUMNS`."""
    header = ["method", "seeds"] + [h for h, _, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in methods:
        runs = [r for (name, _), r in sorted(records.items()) if name == m]
        if not runs:
            continue
        seeds = ",".join(str(r["seed"]) for r in runs)
        cells = [cell([fn(r) for r in runs], d) for _, fn, d in COLUMNS]
        lines.append("| " + " | ".join([runs[0]["label"], seeds] + cells) + " |")
    return "\n".join(lines)


def _previous_command(path):
    """The ``Command:`` of an earlier report (a re-made report keeps the sweep's command)."""
    if os.path.isfile(path):
        with open(path) as f:
            first = f.readline()
        if first.startswith("Command: `"):
            return first[len("Command: `"):].rstrip().rstrip("`")
    return ""


def write_report(folder, methods, plots=(), command=""):
    """Write ``folder/results.md`` (table, legend, plot list) and ``folder/summary.json``; returns the table.
    Without ``command`` the earlier report's command is kept."""
    records = load_records(folder)
    table = markdown_table(records, methods)
    command = command or _previous_command(os.path.join(folder, "results.md"))
    legend = ("mAP/R1/R5/mINP on the target test set (%); MI(pseudo, cam): mutual information (nats) between the "
              "last epoch's pseudo-labels and the cameras; cam probe: held-out accuracy of a linear camera classifier "
              "on the final test features (%); d_inter: ACAN's inter-camera distance of the unit test features; lost "
              "ids: target identities absent from every cluster; D acc: last epoch's mean discriminator accuracy; "
              "train s/epoch: training steps only; clustering s/epoch: feature extraction + clustering. "
              "Cells: mean ± std over the seeds listed.")
    text = f"{table}\n\n{legend}\n"
    if command:
        text = f"Command: `{command}`\n\n" + text
    if plots:
        text += "\nPlots:\n" + "\n".join(f"- {os.path.relpath(p, folder)}" for p in plots) + "\n"
    with open(os.path.join(folder, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(summary(records, methods), f, indent=1)
    return table
