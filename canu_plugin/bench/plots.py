"""The benchmark's figures (matplotlib, Agg): per-epoch curves averaged over seeds (MI, lost ids,
mAP: the papers' Fig. 3-6) and montages of the runs' own PNGs (PCA per camera pair, Fig. 7 of
CANU-ReID; ACAN's confusion matrices, Fig. 8)."""
import os

import numpy as np

from canu_plugin.plotting import pyplot

FAMILY_TITLES = {"clustering": "pseudo-label baseline", "mmt": "MMT", "ssg": "SSG", "acan": "ACAN"}


def _series(runs, points):
    """Mean over runs of per-epoch values: ``points(run) -> {epoch: value}``; returns (epochs, means)."""
    per_epoch = {}
    for r in runs:
        for e, v in points(r).items():
            if v is not None:
                per_epoch.setdefault(e, []).append(v)
    epochs = sorted(per_epoch)
    return epochs, [float(np.mean(per_epoch[e])) for e in epochs]


def curves(records, methods, families, points, ylabel, title, path):
    """One panel per family, one line per method (mean over its seeds). Returns ``path`` or None
    when no run has any point.

    Args:
        records: {(method, seed): record}; methods: row order; families: panels to draw.
        points: record -> {epoch: value}.
    """
    panels = []
    for fam in families:
        lines = []
        for m in methods:
            runs = [r for (name, _), r in sorted(records.items()) if name == m and r["family"] == fam]
            if runs:
                x, y = _series(runs, points)
                if x:
                    lines.append((runs[0]["label"], len(runs), x, y))
        if lines:
            panels.append((fam, lines))
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (fam, lines) in zip(axes[0], panels):
        for label, n, x, y in lines:
            ax.plot(x, y, marker="o", ms=3, label=f"{label} (n={n})")
        ax.set_title(FAMILY_TITLES.get(fam, fam), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))  # room for the title
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def montage(images, path, title, columns=4):
    """Put existing PNGs side by side, each with its caption.

    Args:
        images: [(caption, png path)], missing files skipped. Returns ``path`` or None.
    """
    images = [(c, p) for c, p in images if p and os.path.isfile(p)]
    if not images:
        return None
    plt = pyplot()
    cols = min(columns, len(images))
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 6.0), 4.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (caption, png) in zip(axes.flat, images):
        ax.imshow(plt.imread(png))
        ax.set_title(caption, fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))  # room for the title
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def mi_points(r):
    return {p["epoch"]: p.get("mi_cam") for p in r["pseudo"]}


def lost_points(r):
    return {p["epoch"]: p.get("lost_ids") for p in r["pseudo"]}


def map_points(r):
    return {e["epoch"]: e["results"][r["target"]]["mAP"] for e in r["epochs"]
            if r["target"] in e.get("results", {})}


def write_plots(records, methods, folder):
    """All figures of a sweep into ``folder/plots``; returns the paths written."""
    out = os.path.join(folder, "plots")
    os.makedirs(out, exist_ok=True)
    clustering = ("clustering", "mmt", "ssg")
    written = [
        curves(records, methods, clustering, mi_points, "MI(pseudo-label, camera) [nats]",
               "Camera information in the pseudo-labels per epoch", os.path.join(out, "mi_per_epoch.png")),
        curves(records, methods, clustering, lost_points, "lost identities",
               "Target identities in no cluster, per epoch", os.path.join(out, "lost_ids_per_epoch.png")),
        curves(records, methods, clustering + ("acan",), map_points, "target mAP (%)",
               "Target mAP per evaluated epoch", os.path.join(out, "map_per_epoch.png")),
    ]
    first_seed = {m: r for (m, s), r in sorted(records.items(), reverse=True)}  # lowest seed wins
    written.append(montage([(first_seed[m]["label"], first_seed[m]["plots"].get("pca")) for m in methods
                            if m in first_seed], os.path.join(out, "pca_cam1_cam2.png"),
                           "PCA of the target test features of cameras 1 and 2 (blue/orange), seed "
                           f"{min(s for _, s in records) if records else ''}"))
    written.append(montage([(first_seed[m]["label"], first_seed[m]["plots"].get("confusion")) for m in methods
                            if m in first_seed and first_seed[m]["family"] == "acan"],
                           os.path.join(out, "acan_confusion.png"),
                           "ACAN: discriminator's camera confusion (last evaluation)"))
    return [p for p in written if p]
