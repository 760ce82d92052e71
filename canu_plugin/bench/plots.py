"""The benchmark's figures (matplotlib, Agg), legible at the width of docs/benchmark.md (<= 1000 px, text >= 9 pt):
per-epoch curves with seed bands and reference lines (NMI(pseudo-label, camera), lost ids, mAP: the
papers' Fig. 3-6), sweep curves (a metric against the swept value), and montages of the runs' own PNGs
annotated with their numbers (PCA of two cameras, Fig. 7 of CANU-ReID; ACAN's confusion, Fig. 8)."""
import os

import numpy as np

from canu_plugin.bench.metrics import METRICS
from canu_plugin.plotting import pyplot

FAMILY_TITLES = {"clustering": "pseudo-label baseline", "mmt": "MMT", "ssg": "SSG", "acan": "ACAN", "usl": "USL"}
MAX_WIDTH_IN, DPI, FONT = 10.0, 100, 9  # 1000 px


def _style(plt):
    plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT + 1, "legend.fontsize": FONT,
                         "xtick.labelsize": FONT, "ytick.labelsize": FONT})


def _band(per_x):
    """x, mean, low, high (mean ± sample sd; the value itself for one seed) of {x: [values]}."""
    xs = sorted(per_x)
    mean = np.array([np.mean(per_x[x]) for x in xs])
    sd = np.array([np.std(per_x[x], ddof=1) if len(per_x[x]) > 1 else 0.0 for x in xs])
    return xs, mean, mean - sd, mean + sd


def _per_epoch(runs, points):
    per = {}
    for r in runs:
        for e, v in points(r).items():
            if v is not None:
                per.setdefault(e, []).append(v)
    return per


def _panels(n, height=3.4):
    plt = pyplot()
    _style(plt)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(MAX_WIDTH_IN, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return plt, fig, list(axes.flat[:n])


def _save(plt, fig, path, title):
    fig.suptitle(title, fontsize=FONT + 2)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def curves(records, methods, families, points, ylabel, title, path, references=None):
    """One panel per family, one line per method: the mean over its seeds with a ± sd band.

    Args:
        records: {(method, seed): record}; points: record -> {epoch: value};
        references: {label: value} horizontal lines drawn on every panel (e.g. the source model's mAP).
    Returns:
        ``path``, or None when no run has a point.
    """
    panels = []
    for fam in families:
        lines = [(runs[0]["label"], len(runs), _per_epoch(runs, points)) for m in methods
                 for runs in [[r for (name, _), r in sorted(records.items()) if name == m and r["family"] == fam]]
                 if runs]
        lines = [line for line in lines if line[2]]
        if lines:
            panels.append((fam, lines))
    if not panels:
        return None
    plt, fig, axes = _panels(len(panels))
    for ax, (fam, lines) in zip(axes, panels):
        for label, n, per in lines:
            xs, mean, lo, hi = _band(per)
            (line,) = ax.plot(xs, mean, marker="o", ms=3, label=f"{label} (n={n})")
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
        for i, (label, value) in enumerate((references or {}).items()):
            ax.axhline(value, color="0.3", ls=("--", ":", "-.")[i % 3], lw=1, label=label)
        ax.set_title(FAMILY_TITLES.get(fam, fam))
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    return _save(plt, fig, path, title)


def sweep_plot(by_value, methods, key, path, metrics=("mAP", "nmi_cam", "lost_ids", "d_inter")):
    """A metric against the swept value, one line per method (mean ± sd band over seeds).

    Args:
        by_value: {value (str): {(method, seed): record}}.
    Returns:
        ``path``, or None without a finished run.
    """
    values = sorted(by_value, key=float)
    shown = [m for m in metrics if any(METRICS[m].read(r) is not None for v in values for r in by_value[v].values())]
    if not shown:
        return None
    plt, fig, axes = _panels(len(shown), height=3.0)
    for ax, metric in zip(axes, shown):
        for m in methods:
            per = {float(v): [x for (name, _), r in by_value[v].items() if name == m
                              for x in [METRICS[metric].read(r)] if x is not None] for v in values}
            per = {v: xs for v, xs in per.items() if xs}
            if per:
                xs, mean, lo, hi = _band(per)
                (line,) = ax.plot(xs, mean, marker="o", ms=4, label=m)
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
        ax.set_xscale("log" if min(float(v) for v in values) > 0 and max(map(float, values)) / min(
            map(float, values)) >= 10 else "linear")
        ax.set_xlabel(key)
        ax.set_ylabel(METRICS[metric].header)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    return _save(plt, fig, path, f"Sweep of {key} (mean ± sd over seeds)")


def montage(images, path, title, columns=3):
    """Existing PNGs side by side, each with its caption.

    Args:
        images: [(caption, png path)], missing files skipped. Returns ``path`` or None.
    """
    images = [(c, p) for c, p in images if p and os.path.isfile(p)]
    if not images:
        return None
    plt, fig, axes = _panels(len(images), height=MAX_WIDTH_IN / min(columns, len(images)) + 0.5)
    for ax, (caption, png) in zip(axes, images):
        ax.imshow(plt.imread(png))
        ax.set_title(caption, fontsize=FONT)
        ax.axis("off")
    return _save(plt, fig, path, title)


def nmi_points(r):
    return {p["epoch"]: p.get("nmi_cam") for p in r["pseudo"]}


def lost_points(r):
    return {p["epoch"]: p.get("lost_ids") for p in r["pseudo"]}


def map_points(r):
    points = {}
    for e in r["epochs"]:
        res = e.get("results", {})
        value = res.get("mAP", res.get(f"{r['target']}/mAP"))
        if value is not None:
            points[e["epoch"]] = value
    return points


def _mean_final(records, method, key="mAP"):
    values = [r["final"].get(key) for (m, _), r in records.items() if m == method and r["final"].get(key) is not None]
    return float(np.mean(values)) if values else None


def _gt_nmi(records):
    values = [p["gt_nmi_cam"] for r in records.values() for p in r["pseudo"][:1] if "gt_nmi_cam" in p]
    return float(np.mean(values)) if values else None


def write_plots(records, methods, folder):
    """All figures of a benchmark into ``folder/plots``; returns the paths written."""
    out = os.path.join(folder, "plots")
    os.makedirs(out, exist_ok=True)
    clustering = ("clustering", "mmt", "ssg", "usl")
    refs_map = {k: v for k, v in (("source only", _mean_final(records, "source")),
                                  ("supervised on the target", _mean_final(records, "upper"))) if v is not None}
    refs_nmi = {"true identities": _gt_nmi(records)} if _gt_nmi(records) is not None else {}
    written = [
        curves(records, methods, clustering, nmi_points, "NMI(pseudo-label, camera)",
               "Camera information in the pseudo-labels per epoch", os.path.join(out, "nmi_per_epoch.png"), refs_nmi),
        curves(records, methods, clustering, lost_points, "lost identities",
               "Target identities in no cluster, per epoch", os.path.join(out, "lost_ids_per_epoch.png")),
        curves(records, methods, clustering + ("acan",), map_points, "target mAP (%)",
               "Target mAP per evaluated epoch", os.path.join(out, "map_per_epoch.png"), refs_map),
    ]
    first = {m: r for (m, s), r in sorted(records.items(), reverse=True)}  # the lowest seed
    caption = lambda r: (f"{r['label']}\nprobe {r['final'].get('cam_probe', float('nan')):.0f}%, "  # noqa: E731
                         f"d_inter {r['final'].get('d_inter_pooled', float('nan')):.3f}")
    written.append(montage([(caption(first[m]), first[m]["plots"].get("pca")) for m in methods if m in first],
                           os.path.join(out, "pca_cam1_cam2.png"),
                           "PCA of the target test features of cameras 1 and 2 (lowest seed)"))
    written.append(montage([(first[m]["label"], first[m]["plots"].get("confusion")) for m in methods
                            if m in first and first[m]["family"] == "acan"],
                           os.path.join(out, "acan_confusion.png"), "ACAN: discriminator's camera confusion"))
    return [p for p in written if p]


__all__ = ["curves", "sweep_plot", "montage", "write_plots", "nmi_points", "lost_points", "map_points"]
