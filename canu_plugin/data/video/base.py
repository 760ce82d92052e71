"""What every tracklet (video) dataset shares: fast-reid's dataset conventions with tracklets as items.

A tracklet item is ``(frame_paths, pid, camid)``: ``frame_paths`` a tuple of frame image paths in
temporal order (torchreid's video convention, which fast-reid's ``Dataset.parse_data`` already
documents as "img_path(s)"). As in fast-reid's image parsers, train items carry
``"<dataset_name>_<pid>"`` / ``"<dataset_name>_<camid>"`` strings and query / gallery items ints
(camid 0-based), so ``combineall``, fast-reid's ``CommDataset`` relabelling, the ACAN intra-camera
relabelling (:func:`canu_plugin.data.intra_camera.intra_camera_items`) and the pseudo-label
``TargetSet`` all work on them unchanged. A tracklet's key (``img_paths`` in a batch, the key of
the pseudo-label loop) is its first frame path.
"""
import logging

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset
from tabulate import tabulate
from termcolor import colored

from canu_plugin.data.datasets import _require as require  # noqa: F401  (re-exported for the parsers)
from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)

VIDEO_PROTOCOLS = ("official", "torchreid")  # TEST.VIDEO_PROTOCOL values (see queries_in_gallery)


class VideoReidDataset(ImageDataset):
    """fast-reid dataset whose items are tracklets ``(frame_paths, pid, camid)``.

    ``is_video = True`` is what the trainer checks (:func:`is_video_dataset`): such datasets get
    the clip loaders, temporal pooling and the tracklet evaluator. ``show_train`` / ``show_test``
    print tracklets and frames instead of images. Subclasses implement ``check_layout(root)``
    (classmethod: raise CanuError with the expected path, return the dataset folder), which
    :func:`canu_plugin.data.datasets.check_dataset_layout` calls before a run.

    ``query`` / ``gallery`` are disjoint. ``query_in_gallery`` says whether the release's own
    evaluation ranks the query tracklets as gallery items too (MARS: True); under
    ``TEST.VIDEO_PROTOCOL "official"`` the evaluator then adds them (:func:`queries_in_gallery`).
    """
    is_video = True
    dataset_dir = ""
    dataset_name = "video"
    query_in_gallery = False  # the release's evaluation: are the queries gallery items too?

    @classmethod
    def check_layout(cls, root):
        """The dataset's folder under ``root``; CanuError naming the expected path when it is not there."""
        raise TypeError(f"{cls.__name__} must implement check_layout(root) (the VideoReidDataset contract)")

    def show_train(self):
        _show(type(self).__name__, [("train", self.train)])

    def show_test(self):
        _show(type(self).__name__, [("query", self.query), ("gallery", self.gallery)])


def _show(name, subsets):
    """Log fast-reid's dataset table with tracklet and frame counts."""
    rows = []
    for subset, items in subsets:
        pids, cams = {it[1] for it in items}, {it[2] for it in items}
        rows.append([subset, len(pids), len(items), sum(len(it[0]) for it in items), len(cams)])
    table = tabulate(rows, tablefmt="pipe", headers=["subset", "# ids", "# tracklets", "# frames", "# cameras"],
                     numalign="left")
    logger.info(f"=> Loaded {name} in csv format: \n" + colored(table, "cyan"))


def is_video_dataset(name):
    """True when the registered dataset ``name`` is a tracklet dataset (False for unknown names)."""
    try:
        cls = DATASET_REGISTRY.get(name)
    except KeyError:
        return False
    return bool(getattr(cls, "is_video", False))


def uses_video(names):
    """True when the datasets ``names`` are tracklet datasets, False when they are image datasets.

    Raises:
        CanuError: a mix of both (one model cannot train on clips and single images at once).
    """
    kinds = {n: is_video_dataset(n) for n in names}
    if len(set(kinds.values())) > 1:
        raise CanuError(f"DATASETS.NAMES mixes video (tracklet) and image datasets {kinds}: train on one kind; "
                        "an image-trained model can still be tested on video datasets (DATASETS.TESTS)")
    return any(kinds.values())


def queries_in_gallery(name, protocol):
    """True when the evaluation of tracklet dataset ``name`` under ``TEST.VIDEO_PROTOCOL`` ``protocol``
    ranks the query tracklets as gallery items too: "official" and a dataset whose release does so
    (``query_in_gallery``: MARS's MATLAB code); "torchreid": never (torchreid's gallery is the
    test set minus the queries); ``name`` None: False. Raises CanuError for another protocol."""
    if protocol not in VIDEO_PROTOCOLS:
        raise CanuError(f"TEST.VIDEO_PROTOCOL={protocol!r} is not a tracklet evaluation protocol: use one of "
                        f"{VIDEO_PROTOCOLS} (official: each release's own evaluation; torchreid: the gallery "
                        "without the query tracklets)")
    if protocol != "official" or name is None:
        return False
    return bool(getattr(DATASET_REGISTRY.get(name), "query_in_gallery", False))


def is_tracklet_items(items):
    """True when fast-reid items are tracklets (their first field is a tuple / list of frame paths)."""
    return bool(items) and isinstance(items[0][0], (tuple, list))


def train_labels(dataset_name, pid, camid):
    """fast-reid's train-item labels: ``("<name>_<pid>", "<name>_<camid>")``."""
    return f"{dataset_name}_{pid}", f"{dataset_name}_{camid}"


__all__ = ["VideoReidDataset", "VIDEO_PROTOCOLS", "is_video_dataset", "uses_video", "queries_in_gallery",
           "is_tracklet_items", "require", "train_labels"]
