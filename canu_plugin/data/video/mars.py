"""MARS (Zheng et al., ECCV 2016) as released, and the synthetic SynthVidA / SynthVidB in its layout.

Layout parsed (the release, as torchreid's ``mars.py`` reads it)::

    <root>/mars/                       (folder name "mars", torchreid's; "MARS" is accepted too)
      bbox_train/<pid>/<frame>.jpg     training frames, one folder per identity
      bbox_test/<pid>/<frame>.jpg      test frames (pid folder "0000" = distractors, "00-1" = junk)
      info/train_name.txt              frame file names of bbox_train, one a line
      info/test_name.txt               frame file names of bbox_test
      info/tracks_train_info.mat       "track_train_info": (N, 4) [start, end, pid, camid], start/end
                                       1-based inclusive rows of train_name.txt, camid 1..6
      info/tracks_test_info.mat        "track_test_info": the same for test_name.txt
      info/query_IDX.mat               "query_IDX": 1-based rows of track_test_info that are queries

Frame names are ``<pid><C><cam><T><tracklet><F><frame>.jpg``, e.g. ``0001C1T0001F001.jpg``: pid
(4 characters), camera (1-6), tracklet number within (pid, camera), frame number. Every frame of a
tracklet must carry the tracklet's pid and camera (torchreid asserts it; here a CanuError names the
row). Items: junk tracklets (pid -1) are dropped; distractors (pid 0) stay in the gallery, as
negatives; ``query`` holds the query_IDX rows, ``gallery`` every other test row (torchreid's
split). The release's evaluation (MARS-evaluation's ``evaluation_mars.m``) ranks *every* test
tracklet for each query, the queries included, and ignores the junk tracklets and those of the
query's id and camera (the query itself among them): ``query_in_gallery = True``, so under
``TEST.VIDEO_PROTOCOL "official"`` the evaluator adds the queries to the gallery. Released
statistics: 8,298 train and 12,180 test tracklets (870 junk, 3,248 distractor), 1,980 queries of
real ids (at most one per id and camera); gallery 11,310 tracklets (official, junk ignored) or
9,330 (torchreid: without the queries; 140 queries then have no match and are skipped); 6 cameras.
"""
import os
import re

import numpy as np
from fastreid.data.datasets import DATASET_REGISTRY
from scipy.io import loadmat

from canu_plugin.data.video.base import VideoReidDataset, require, train_labels
from canu_plugin.errors import CanuError

FRAME_NAME = re.compile(r"(\d{4}|00-1)C(\d)T(\d{4})F(\d+)\.jpg")
NAME_FILES = {"train": "train_name.txt", "test": "test_name.txt"}
TRACK_FILES = {"train": ("tracks_train_info.mat", "track_train_info"),
               "test": ("tracks_test_info.mat", "track_test_info")}
QUERY_FILE = ("query_IDX.mat", "query_IDX")
FOLDERS = {"train": "bbox_train", "test": "bbox_test"}
MAX_CAMERA = 6


def pid_folder(pid):
    """MARS's 4-character identity string: ``0001``, ``0000`` (distractor), ``00-1`` (junk)."""
    return "00-1" if int(pid) == -1 else f"{int(pid):04d}"


def frame_name(pid, cam, tracklet, frame):
    """MARS frame file name, e.g. ``frame_name(1, 1, 1, 1) == "0001C1T0001F001.jpg"`` (cam 1-based)."""
    return f"{pid_folder(pid)}C{cam}T{tracklet:04d}F{frame:03d}.jpg"


def _read_names(path):
    """Frame names of one name list (blank lines ignored)."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _read_mat(path, key, fix):
    """The array ``key`` of a .mat file, or CanuError naming the file and the fix."""
    try:
        data = loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError) as e:
        raise CanuError(f"cannot read {path} ({type(e).__name__}: {e}): {fix}") from e
    if key not in data:
        raise CanuError(f"{path} has no variable {key!r} (found {sorted(k for k in data if not k.startswith('__'))}): "
                        f"{fix}")
    return np.asarray(data[key])


def _tracks(path, key, fix):
    """(N, 4) int64 rows [start, end, pid, camid] of a tracks_*_info.mat."""
    tracks = _read_mat(path, key, fix)
    if tracks.ndim != 2 or tracks.shape[1] != 4 or not np.all(np.isfinite(tracks)) or np.any(tracks % 1):
        raise CanuError(f"{path}: {key!r} must be an (N, 4) integer array [start, end, pid, camid], got "
                        f"shape {tracks.shape}: {fix}")
    return tracks.astype(np.int64)


def _query_rows(path, num_test, fix):
    """(Q,) 0-based, unique rows of the test tracks that are queries."""
    idx = _read_mat(path, QUERY_FILE[1], fix).reshape(-1)
    if idx.size == 0 or np.any(idx % 1) or idx.min() < 1 or idx.max() > num_test or len(np.unique(idx)) != idx.size:
        raise CanuError(f"{path}: query_IDX must hold distinct 1-based rows of the {num_test} test tracklets: {fix}")
    return idx.astype(np.int64) - 1


@DATASET_REGISTRY.register()
class MARS(VideoReidDataset):
    """MARS tracklets (see the module docstring for the layout and protocol).

    Items: ``(frame_paths, pid, camid)``; train pid / camid are ``"mars_<pid>"`` / ``"mars_<camid>"``
    (fast-reid's train convention), query / gallery ints with camid 0-based.
    """
    dataset_dir = "mars"
    dataset_name = "mars"
    folder_aliases = ("MARS",)
    query_in_gallery = True  # MARS-evaluation ranks every test tracklet, queries included

    def __init__(self, root="datasets", **kwargs):
        self.root = os.fspath(root)
        base = type(self).check_layout(self.root)
        info, fix = os.path.join(base, "info"), self.fix(self.root)
        names = {s: _read_names(os.path.join(info, f)) for s, f in NAME_FILES.items()}
        tracks = {s: _tracks(os.path.join(info, f), key, fix) for s, (f, key) in TRACK_FILES.items()}
        q_rows = _query_rows(os.path.join(info, QUERY_FILE[0]), len(tracks["test"]), fix)
        is_query = np.zeros(len(tracks["test"]), dtype=bool)
        is_query[q_rows] = True
        train = self._tracklets(base, "train", names["train"], tracks["train"], np.arange(len(tracks["train"])))
        query = self._tracklets(base, "test", names["test"], tracks["test"], q_rows)
        gallery = self._tracklets(base, "test", names["test"], tracks["test"], np.flatnonzero(~is_query))
        super().__init__(train, query, gallery, **kwargs)

    @classmethod
    def base_dir(cls, root):
        """The dataset folder: ``<root>/<dataset_dir>`` (or an accepted alias that exists)."""
        for name in (cls.dataset_dir, *cls.folder_aliases):
            if os.path.isdir(os.path.join(root, name)):
                return os.path.join(root, name)
        return os.path.join(root, cls.dataset_dir)

    @classmethod
    def fix(cls, root):
        """How to put the dataset where this parser looks (used in every error message)."""
        return (f"put MARS at {os.path.join(root, cls.dataset_dir)}/{{bbox_train,bbox_test,info}} with info/ "
                f"holding {', '.join(list(NAME_FILES.values()) + [f for f, _ in TRACK_FILES.values()] + [QUERY_FILE[0]])}"
                f" (the release's MARS-evaluation info files), or set FASTREID_DATASETS (--root) to the folder that "
                "holds it")

    @classmethod
    def check_layout(cls, root):
        """Raise CanuError (the expected path and the fix) unless the folders and info files exist;
        returns the dataset folder."""
        root, fix = os.fspath(root), cls.fix(os.fspath(root))
        base = cls.base_dir(root)
        require(base, fix)
        for folder in FOLDERS.values():
            require(os.path.join(base, folder), fix)
        files = list(NAME_FILES.values()) + [f for f, _ in TRACK_FILES.values()] + [QUERY_FILE[0]]
        for name in files:
            require(os.path.join(base, "info", name), fix, kind="file")
        return base

    def _tracklets(self, base, split, names, tracks, rows):
        """Items of the given rows of ``tracks`` (junk, pid -1, dropped)."""
        items, where = [], os.path.join(base, "info", TRACK_FILES[split][0])
        for row in rows:
            start, end, pid, cam = (int(v) for v in tracks[row])
            if pid == -1:
                continue  # junk tracklets are ignored, as released
            paths = self._frame_paths(base, split, names, (start, end, pid, cam), f"{where}, row {row + 1}")
            if split == "train":
                items.append((paths, *train_labels(self.dataset_name, pid, cam - 1)))
            else:
                items.append((paths, pid, cam - 1))
        return items

    def _frame_paths(self, base, split, names, track, where):
        """Frame paths of one tracklet ``(start, end, pid, cam)``, after checking its rows and names."""
        start, end, pid, cam = track
        fix = self.fix(self.root)
        if not 1 <= start <= end <= len(names):
            raise CanuError(f"{where}: frames {start}..{end} are outside the {len(names)} names of "
                            f"{NAME_FILES[split]}: {fix}")
        if not 1 <= cam <= MAX_CAMERA:
            raise CanuError(f"{where}: camera {cam} is outside 1..{MAX_CAMERA}: {fix}")
        frames = names[start - 1:end]
        for name in frames:
            match = FRAME_NAME.fullmatch(name)
            if match is None:
                raise CanuError(f"{where}: frame name {name!r} is not <pid 4 chars>C<cam>T<tracklet 4 digits>F<frame>.jpg "
                                f"(e.g. 0001C1T0001F001.jpg): {fix}")
            if match.group(1) != pid_folder(pid) or int(match.group(2)) != cam:
                raise CanuError(f"{where}: frame {name!r} is not of the row's identity {pid_folder(pid)} and camera "
                                f"{cam} (a tracklet must hold one person seen by one camera): {fix}")
        folder = os.path.join(base, FOLDERS[split], pid_folder(pid))
        paths = tuple(os.path.join(folder, n) for n in frames)
        for path in (paths[0], paths[-1]):
            if not os.path.isfile(path):
                raise CanuError(f"missing frame {path} (listed in {NAME_FILES[split]}): {fix}")
        return paths


class SynthVideoDomain(MARS):
    """Base of the synthetic tracklet domains: MARS's parser, unchanged, on ``<root>/<name>``."""
    folder_aliases = ()

    @classmethod
    def fix(cls, root):
        return (f"run `python tools/make_synthetic.py --root {root} --domains {cls.__name__}` to generate it "
                "(add --overwrite to regenerate a damaged copy)")


@DATASET_REGISTRY.register()
class SynthVidA(SynthVideoDomain):
    """Synthetic tracklets, domain A (summer, 6 cameras), MARS layout: ``<root>/SynthVidA``."""
    dataset_dir = "SynthVidA"
    dataset_name = "synthvida"


@DATASET_REGISTRY.register()
class SynthVidB(SynthVideoDomain):
    """Synthetic tracklets, domain B (winter, 5 cameras), MARS layout: ``<root>/SynthVidB``."""
    dataset_dir = "SynthVidB"
    dataset_name = "synthvidb"


__all__ = ["MARS", "SynthVideoDomain", "SynthVidA", "SynthVidB", "frame_name", "pid_folder", "FRAME_NAME"]
