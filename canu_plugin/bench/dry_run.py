"""``canu-bench --dry-run``: the runs a benchmark would make, printed before anything trains.

For each run, in the order the benchmark makes them: the runs it starts from, its config, its length
(epochs x iterations x batch) and the folder it writes; then the totals, with a GPU time that is an
estimate (a fixed image rate, not a measurement). Nothing is trained or written.

Iterations per epoch are what the trainer will use: ``PSEUDO.ITERS_PER_EPOCH`` when a pseudo-label
config sets it, else the training images // ``SOLVER.IMS_PER_BATCH``, with the images counted by the
loader under the dataset root, or, for a dataset not found there, the release's figure
(:data:`canu_plugin.data.check.OFFICIAL`). For ACAN on MSMT17 the count includes the small camera it
drops (camera 2, about 200 images): a couple of iterations an epoch more than the run makes.
"""
import os
from dataclasses import dataclass

from canu_plugin.bench.methods import SETTINGS, plan
from canu_plugin.bench.runner import run_name
from canu_plugin.errors import CanuError

# the estimate's assumptions: ResNet-50 at 256x128 with AMP on one recent GPU; MMT trains two networks on
# two views and runs two mean teachers (about three times one network's work)
IMAGES_PER_SECOND = 1000
COST = {"mmt": 3.0}


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: ``stem`` (``<method>_s<seed>``), the stems it starts from (``after``), its
    config, epochs, iterations per epoch, batch, where its images count came from (``counted``), the
    folder it writes and whether it is already finished (its record exists: the benchmark reuses it)."""
    stem: str
    label: str
    family: str
    after: tuple
    config: str
    epochs: int
    iterations: int
    batch: int
    counted: str
    out_dir: str
    done: bool

    @property
    def images(self):
        """Training images seen (epochs x iterations x batch)."""
        return self.epochs * self.iterations * self.batch


def train_images(name, root):
    """(number of training items, where the number comes from) of dataset ``name``: the loader's count
    under ``root``, else the release's figure, else (None, "unknown")."""
    from fastreid.data.datasets import DATASET_REGISTRY

    from canu_plugin.data.check import OFFICIAL
    from canu_plugin.data.datasets import check_dataset_layout
    try:
        check_dataset_layout(name, root)
        return len(DATASET_REGISTRY.get(name)(root=root).train), "counted"
    except (CanuError, OSError, AssertionError, ValueError, KeyError):
        pass
    if name in OFFICIAL:
        return OFFICIAL[name].splits["train"][1], "release"
    return None, "unknown"


def iterations_per_epoch(cfg, root):
    """(iterations per epoch, how it was found) as the trainer will run ``cfg``."""
    if cfg.PSEUDO.ENABLED and cfg.PSEUDO.ITERS_PER_EPOCH > 0:
        return int(cfg.PSEUDO.ITERS_PER_EPOCH), "config"
    names = list(cfg.DATASETS.NAMES)
    if cfg.PSEUDO.ENABLED and cfg.PSEUDO.TRAIN_SOURCE:
        names += list(cfg.PSEUDO.SOURCE_DATASETS)
    counts = [train_images(n, root) for n in names]
    if any(n is None for n, _ in counts):
        return 0, "unknown"
    how = "release" if any(h == "release" for _, h in counts) else "counted"
    return sum(n for n, _ in counts) // cfg.SOLVER.IMS_PER_BATCH, how


def planned_runs(setting, methods, seeds, folder, root, extra=()):
    """The benchmark's main-table runs in order, as :class:`PlannedRun` s.

    Args:
        setting, methods, seeds: as ``canu-bench``; folder: ``<output>/<setting>``; root: dataset root;
        extra: the user's ``--opts`` (they change the budget as they will change the runs).
    """
    from canu_plugin.engine.setup import setup_cfg
    table = SETTINGS[setting]["methods"]
    out = []
    for key, seed, deps in plan(setting, methods, seeds):
        method = table[key]
        # device and weights keys do not change a run's length; CPU here so that no GPU is needed to plan
        cfg = setup_cfg(method.config, [*method.opts, *extra, "MODEL.DEVICE", "cpu",
                                        "MODEL.BACKBONE.PRETRAIN", "False"])
        iters, how = iterations_per_epoch(cfg, root)
        stem = run_name(key, seed)
        out.append(PlannedRun(stem, method.label, method.family, tuple(run_name(*d) for d in deps.values()),
                              method.config, int(cfg.SOLVER.MAX_EPOCH), iters, int(cfg.SOLVER.IMS_PER_BATCH), how,
                              os.path.join(folder, "runs", stem),
                              os.path.isfile(os.path.join(folder, stem + ".json"))))
    return out


def _show(path):
    """``path`` relative to the working folder when it is below it (as the user typed ``--output``)."""
    here = os.getcwd() + os.sep
    return os.path.relpath(path) if path.startswith(here) else path


def _hours(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def format_plan(runs, setting, folder, root):
    """The plan as text: one block per run, then the totals and the GPU-time estimate."""
    target = SETTINGS[setting]["target"]
    lines = [f"[bench] dry run of setting {setting} (target {target}), dataset root {root}: {len(runs)} runs in this "
             "order; nothing is trained", ""]
    number = {r.stem: i + 1 for i, r in enumerate(runs)}
    for i, r in enumerate(runs, 1):
        after = ", ".join(f"{s} (#{number[s]})" for s in r.after) or "-"
        iters = f"{r.iterations:,}" if r.iterations else "?"
        note = {"release": " (iterations from the release's image count: dataset not found under the root)",
                "unknown": " (iterations unknown: dataset not found)"}.get(r.counted, "")
        lines += [f"{i:>2}. {r.stem}: {r.label}" + ("  [finished: reused, not trained again]" if r.done else ""),
                  f"    after:  {after}",
                  f"    config: {r.config}",
                  f"    length: {r.epochs} epochs x {iters} iterations x batch {r.batch}{note}",
                  f"    writes: {_show(r.out_dir)}{os.sep} and {_show(os.path.join(folder, r.stem + '.json'))}"]
    todo = [r for r in runs if not r.done]
    steps = sum(r.epochs * r.iterations for r in todo)
    images = sum(r.images for r in todo)
    seconds = sum(r.images * COST.get(r.family, 1.0) for r in todo) / IMAGES_PER_SECOND
    lines += ["", f"total: {len(runs)} runs, {len(todo)} to train ({len(runs) - len(todo)} finished), "
                  f"{steps:,} iterations, {images:,} training images",
              f"GPU time, an estimate (not measured): ~{_hours(seconds)} of training at {IMAGES_PER_SECOND:,} "
              f"images/s (ResNet-50, 256x128, AMP, one recent GPU; MMT x3), plus clustering and evaluation",
              f"report: {_show(os.path.join(folder, 'results.md'))}"]
    return "\n".join(lines)


def dry_run(setting, methods, seeds, folder, root, extra=()):
    """Print the plan (:func:`format_plan`) and return it."""
    text = format_plan(planned_runs(setting, methods, seeds, folder, root, extra), setting, folder, root)
    print(text)
    return text


__all__ = ["PlannedRun", "planned_runs", "format_plan", "dry_run", "iterations_per_epoch", "train_images"]
