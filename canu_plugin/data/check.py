"""Count what the loaders read from each dataset and compare it with the official release's figures
(``canu-check-data``): a half-copied folder, a renamed split or a wrong version shows before hours of
training, not as a poor mAP afterwards.

The official figures are what fast-reid's / torchreid's parsers read from a complete release (junk
images, pid -1, dropped; distractors, pid 0 or their own ids, kept in the gallery), each with its source.
A figure of ``None`` is not checked. Synthetic datasets (SynthA, SynthVidB, ...) have no official
figures: they are counted and not compared.
"""
import os
from dataclasses import dataclass, field

from fastreid.data.datasets import DATASET_REGISTRY

from canu_plugin.data.datasets import check_dataset_layout
from canu_plugin.errors import CanuError

SPLITS = ("train", "query", "gallery")


@dataclass(frozen=True)
class Release:
    """A release's figures: ``splits[split] = (identities, images or tracklets)``, ``cameras`` over
    all splits, ``source``: where the figures come from, ``note``: how to read them."""
    splits: dict
    cameras: int
    source: str
    note: str = ""


OFFICIAL = {
    # Zheng et al., ICCV 2015: 751 train ids / 12,936 images, 750 test ids / 3,368 queries, 19,732
    # images in bounding_box_test; fast-reid's and torchreid's Market1501 drop its 3,819 junk images
    # (pid -1) and keep the distractors (pid 0): 15,913 gallery images of 751 ids (torchreid's
    # market1501.py docstring "12936 (train) + 3368 (query) + 15913 (gallery)").
    "Market1501": Release({"train": (751, 12936), "query": (750, 3368), "gallery": (751, 15913)}, 6,
                          "Zheng et al. ICCV 2015; torchreid market1501.py",
                          "gallery without the junk (-1) images, as fast-reid reads it (19,732 files in the folder)"),
    # The DukeMTMC-reID README (github.com/layumi/DukeMTMC-reID_evaluation): 16,522 train images of
    # 702 ids, 2,228 queries of the other 702 ids, 17,661 gallery images (702 ids + 408 distractor ids).
    "DukeMTMC": Release({"train": (702, 16522), "query": (702, 2228), "gallery": (1110, 17661)}, 8,
                        "DukeMTMC-reID README (layumi/DukeMTMC-reID_evaluation)"),
    # Wei et al., CVPR 2018 and fast-reid's msmt17.py docstring: 1,041 train ids, "32621 (train) +
    # 11659 (query) + 82161 (gallery)", 3,060 test ids, 15 cameras. The 32,621 training images are
    # list_train.txt (30,248) + list_val.txt (2,373), of the same 1,041 ids: fast-reid's MSMT17 trains
    # on list_train.txt alone, MSMT17TrainVal (MMT's recipes, as MMT's msmt17.py) on both.
    "MSMT17": Release({"train": (1041, 30248), "query": (3060, 11659), "gallery": (3060, 82161)}, 15,
                      "Wei et al. CVPR 2018; fast-reid msmt17.py",
                      "train = list_train.txt, what fast-reid's MSMT17 trains on (+ list_val.txt: MSMT17TrainVal); "
                      "V1 and V2 hold the same images"),
    "MSMT17TrainVal": Release({"train": (1041, 32621), "query": (3060, 11659), "gallery": (3060, 82161)}, 15,
                              "Wei et al. CVPR 2018; fast-reid msmt17.py; MMT msmt17.py",
                              "train = list_train.txt + list_val.txt (MMT's recipes); V1 and V2 hold the same "
                              "images"),
    # torchreid's mars.py docstring: "8298 (train) + 1980 (query) + 9330 (gallery)" tracklets, 1,261
    # ids (625 train + 636 test); junk tracklets dropped, distractors (pid 0) kept: 626 query and 622
    # gallery ids as torchreid counts them (deep-person-reid issue #77).
    "MARS": Release({"train": (625, 8298), "query": (626, 1980), "gallery": (622, 9330)}, 6,
                    "torchreid mars.py; deep-person-reid issue #77"),
    # torchreid's dukemtmcvidreid.py docstring: "702 (train) + 702 (test)" ids, "2196 (train) + 2636
    # (test)" tracklets; 702 query tracklets (one per test id), the gallery's 1,110 ids = 702 + 408
    # distractor ids (as DukeMTMC-reID).
    "DukeMTMCVideoReID": Release({"train": (702, 2196), "query": (702, 702), "gallery": (1110, 2636)}, 8,
                                 "torchreid dukemtmcvidreid.py; Wu et al. CVPR 2018"),
    # The authors' loader (liminxian/Tracklet-Association-Unsupervised-Deep-Learning,
    # reid/datasets/duke_si_tkl.py): "702 (train) + 701 (query) + 1086 (gallery)" ids, "5803 (train)
    # + 701 (query) + 6143 (gallery)" tracklets; the release README: 1,788 ids, DukeMTMC's 8 cameras.
    "DukeMTMCSITracklet": Release({"train": (702, 5803), "query": (701, 701), "gallery": (1086, 6143)}, 8,
                                  "Li et al. TPAMI 2019, the authors' duke_si_tkl.py"),
}


@dataclass
class SplitCount:
    """One split as the loader reads it: identities, cameras, items (images or tracklets), frames
    (tracklets only)."""
    ids: int
    cameras: set
    items: int
    frames: int = None


@dataclass
class DatasetCheck:
    """What :func:`check_dataset` found: counts per split, the problems (empty when the release
    matches), notes (the version found, ...), and whether official figures exist."""
    name: str
    counts: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    release: Release = None


def _count(items):
    """:class:`SplitCount` of fast-reid items ``(path or frame paths, pid, camid)``."""
    video = bool(items) and isinstance(items[0][0], (tuple, list))
    cams = {int(str(it[2]).rsplit("_", 1)[-1]) for it in items}  # train camids are "<dataset>_<camid>" strings
    return SplitCount(ids=len({it[1] for it in items}), cameras=cams, items=len(items),
                      frames=sum(len(it[0]) for it in items) if video else None)


def _splits(name, root):
    """{split: items} exactly as the training / evaluation loaders read them."""
    data = DATASET_REGISTRY.get(name)(root=root)
    return {"train": list(data.train), "query": data.query, "gallery": data.gallery}


def _msmt_note(root):
    """Which MSMT17 version fast-reid reads (MSMT17_V1 when both folders exist: said loudly)."""
    found = [v for v in ("MSMT17_V1", "MSMT17_V2") if os.path.isdir(os.path.join(root, v))]
    if len(found) == 2:
        return ("version: MSMT17_V1 AND MSMT17_V2 are both here; fast-reid reads MSMT17_V1 only (move the other "
                "one away if you meant it)")
    return f"version: {found[0]}" if found else "version: none found"


def _compare(check):
    """Fill ``check.problems`` with every count that differs from the official figure."""
    rel = check.release
    for split in SPLITS:
        got, (ids, items) = check.counts[split], rel.splits[split]
        kind = "tracklets" if got.frames is not None else "images"
        for what, value, official in (("identities", got.ids, ids), (kind, got.items, items)):
            if official is not None and value != official:
                hint = " (a half-copied folder?)" if value < official else " (files of another split or release?)"
                check.problems.append(f"{split}: {value:,} {what}, the release has {official:,}{hint}")
    cams = set().union(*(c.cameras for c in check.counts.values()))
    if len(cams) != rel.cameras:
        check.problems.append(f"{len(cams)} cameras over all splits, the release has {rel.cameras}")


def check_dataset(name, root, official=None):
    """Count dataset ``name`` under ``root`` and compare it with :data:`OFFICIAL` (when listed), or
    with ``official`` ({name: Release}, e.g. :data:`canu_plugin.data.fakes.FAKE_FIGURES`).

    A layout the loader cannot read becomes a problem (the loader's message), not an exception.
    Returns:
        DatasetCheck.
    """
    check = DatasetCheck(name, release=(OFFICIAL if official is None else official).get(name))
    try:
        DATASET_REGISTRY.get(name)
    except KeyError:
        check.problems.append(f"no dataset named {name!r} is registered (a typo in the config?)")
        return check
    try:
        check_dataset_layout(name, root)
        splits = _splits(name, root)
    except (CanuError, OSError, AssertionError, ValueError) as e:
        check.problems.append(f"cannot read it, {e}")
        return check
    check.counts = {s: _count(items) for s, items in splits.items()}
    if name.startswith("MSMT17"):
        check.notes.append(_msmt_note(root))
    if check.release is None:
        check.notes.append("no official figures (synthetic or unknown dataset): counted, not compared")
    else:
        _compare(check)
    return check


def dataset_names(cfg):
    """Every dataset a config names, in order, without repeats: DATASETS.NAMES (training),
    DATASETS.TESTS (evaluation), PSEUDO.SOURCE_DATASETS (the SSG source term)."""
    names = [*cfg.DATASETS.NAMES, *cfg.DATASETS.TESTS, *cfg.PSEUDO.SOURCE_DATASETS]
    return list(dict.fromkeys(names))


def format_check(check):
    """The check as text: a table (split, ids, cameras, images / tracklets, frames, the release's
    figures) and one line per note and problem."""
    lines = [f"== {check.name}" + (f"  (official: {check.release.source})" if check.release else "")]
    if check.counts:
        video = any(c.frames is not None for c in check.counts.values())
        head = ["split", "ids", "cameras", "tracklets" if video else "images"] + (["frames"] if video else [])
        if check.release:
            head += ["release ids", "release " + head[3]]
        rows = [head]
        for split, c in check.counts.items():
            row = [split, f"{c.ids:,}", str(len(c.cameras)), f"{c.items:,}"] + ([f"{c.frames:,}"] if video else [])
            if check.release:
                row += [_fmt(v) for v in check.release.splits[split]]
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        if check.release:
            lines.append(f"  cameras over all splits: release {check.release.cameras}"
                         + (f"; {check.release.note}" if check.release.note else ""))
    lines += [f"  note: {n}" for n in check.notes]
    lines += [f"  {'MISMATCH' if check.counts else 'ERROR'}: {p}" for p in check.problems]
    if check.release and not check.problems:
        lines.append("  OK: matches the release")
    return "\n".join(lines)


def _fmt(value):
    return "-" if value is None else f"{value:,}"


__all__ = ["OFFICIAL", "Release", "SplitCount", "DatasetCheck", "check_dataset", "dataset_names", "format_check"]
