"""DukeMTMC-VideoReID and DukeMTMC-SI-Tracklet: tracklets stored one folder per tracklet.

DukeMTMC-VideoReID (Wu et al., CVPR 2018), as released and as torchreid's ``dukemtmcvidreid.py``
reads it::

    <root>/dukemtmc-vidreid/DukeMTMC-VideoReID/{train,query,gallery}/<pid>/<tracklet>/<frame>.jpg

with frame names ``0001_C6_F0099_X30823.jpg`` (old release: ``0001C6F0099X30823.jpg``): pid,
camera (1-8), frame number within the tracklet, frame number in the camera's video. Statistics:
702 train ids / 2,196 tracklets; 702 test ids / 702 query + 2,636 gallery tracklets.

DukeMTMC-SI-Tracklet (Li et al., TPAMI 2019 "UTAL"; the ACAN paper's "Duke-T"), as the authors'
own loader reads it (github.com/liminxian/Tracklet-Association-Unsupervised-Deep-Learning,
``reid/datasets/duke_si_tkl.py``, with root ``<data-dir>/DukeMTMC-SI-Tracklet``)::

    <root>/DukeMTMC-SI-Tracklet/{train,query,gallery}/<pid>/<tracklet>/c<cam>_<frame>.jpg

e.g. ``train/0005/<tracklet>/c6_030823.jpg``: the identity is the folder's (file names carry none),
the camera (1-8) the digit after ``c``, the frame its number in the camera's video; a tracklet
folder is one camera's. Train / query / gallery are the three folders, as released. Statistics (the
authors' loader docstring; release README: 12,647 tracklets of 1,788 ids, 702 train + 1,086 test
ids): 702 train ids / 5,803 tracklets, 701 query ids / 701 tracklets, 1,086 gallery ids / 6,143
tracklets. The authors read the camera of a tracklet from its first frame; here every frame must
name the same camera (a CanuError otherwise).

Evaluation: the query/ tracklets against the gallery/ ones, as released ("a video for each ID is
used as the query and the remaining videos are placed in the gallery"; Wu et al.'s and torchreid's
loaders read the two folders the same way), so ``TEST.VIDEO_PROTOCOL`` changes nothing here.

Differences from torchreid: frames are ordered by their F number (torchreid looks up F0001..F<n>
and so drops the last frames of a tracklet that starts at F0002); no split JSON cache is written.
"""
import glob
import os
import re

from fastreid.data.datasets import DATASET_REGISTRY

from canu_plugin.data.video.base import VideoReidDataset, require, train_labels
from canu_plugin.errors import CanuError

FRAME_NAME = re.compile(r"(\d+)_?C(\d+)_?F(\d+).*\.jpg")  # VideoReID: pid, camera, frame in the tracklet
SI_FRAME_NAME = re.compile(r"c(\d)_(\d+)\.jpg")  # SI-Tracklet: camera, frame in the camera's video
SPLITS = ("train", "query", "gallery")
MAX_CAMERA = 8


@DATASET_REGISTRY.register()
class DukeMTMCVideoReID(VideoReidDataset):
    """DukeMTMC-VideoReID tracklets (layout in the module docstring).

    Items: ``(frame_paths, pid, camid)``; train labels are ``"<dataset_name>_<pid>"`` strings,
    query / gallery ints (camid 0-based). Tracklets and frames are sorted (paths, F numbers).
    """
    dataset_dir = os.path.join("dukemtmc-vidreid", "DukeMTMC-VideoReID")
    dataset_name = "dukemtmcvidreid"
    release = "DukeMTMC-VideoReID"

    def __init__(self, root="datasets", **kwargs):
        self.root = os.fspath(root)
        base = type(self).check_layout(self.root)
        train, query, gallery = (self._split(os.path.join(base, s), s == "train") for s in SPLITS)
        super().__init__(train, query, gallery, **kwargs)

    @classmethod
    def fix(cls, root):
        """How to put the dataset where this parser looks (used in every error message)."""
        return (f"put {cls.release} at {os.path.join(root, cls.dataset_dir)}/{{{','.join(SPLITS)}}}/<pid>/<tracklet>/"
                "<frame>.jpg, or set FASTREID_DATASETS (--root) to the folder that holds it")

    @classmethod
    def check_layout(cls, root):
        """Raise CanuError (expected path and fix) unless the split folders exist and hold identity
        folders; returns the dataset folder."""
        root = os.fspath(root)
        base, fix = os.path.join(root, cls.dataset_dir), cls.fix(root)
        require(base, fix)
        for split in SPLITS:
            folder = os.path.join(base, split)
            require(folder, fix)
            if not any(os.path.isdir(p) for p in glob.glob(os.path.join(folder, "*"))):
                raise CanuError(f"{folder} holds no identity folder (<pid>/<tracklet>/<frame>.jpg): {fix}")
        return base

    def _split(self, folder, is_train):
        """Tracklet items of one split folder."""
        items, fix = [], self.fix(self.root)
        for pdir in sorted(p for p in glob.glob(os.path.join(folder, "*")) if os.path.isdir(p)):
            name = os.path.basename(pdir)
            if not re.fullmatch(r"-?\d+", name):
                raise CanuError(f"identity folder {pdir} is not a number: {fix}")
            pid = int(name)
            for tdir in sorted(t for t in glob.glob(os.path.join(pdir, "*")) if os.path.isdir(t)):
                paths, cam = self._frames(tdir, pid, fix)
                if paths:
                    items.append((paths, *train_labels(self.dataset_name, pid, cam)) if is_train else (paths, pid, cam))
        if not items:
            raise CanuError(f"no tracklet (<pid>/<tracklet>/<frame>.jpg) under {folder}: {fix}")
        return items

    def _frames(self, tdir, pid, fix):
        """(frame paths sorted by frame number, camera 0-based) of one tracklet folder; ((), None) if empty."""
        found = [(*self._parse_frame(path, pid, fix), path) for path in glob.glob(os.path.join(tdir, "*.jpg"))]
        if not found:
            return (), None
        cams = {c for _, c, _ in found}
        if len(cams) > 1:
            raise CanuError(f"tracklet {tdir} mixes cameras {sorted(cams)} (a tracklet is one camera's): {fix}")
        return tuple(p for _, _, p in sorted(found)), cams.pop() - 1

    def _parse_frame(self, path, pid, fix):
        """(frame number, camera 1-based) of a frame file of identity ``pid``; CanuError if unreadable."""
        match = FRAME_NAME.fullmatch(os.path.basename(path))
        if match is None:
            raise CanuError(f"cannot read frame {path}: names must be <pid>_C<cam>_F<frame>_X<n>.jpg (e.g. "
                            f"0001_C6_F0099_X30823.jpg) or <pid>C<cam>F<frame>X<n>.jpg: {fix}")
        if int(match.group(1)) != pid or not 1 <= int(match.group(2)) <= MAX_CAMERA:
            raise CanuError(f"frame {path}: identity {int(match.group(1))} in a folder of identity {pid}, or camera "
                            f"{match.group(2)} outside 1..{MAX_CAMERA}: {fix}")
        return int(match.group(3)), int(match.group(2))


@DATASET_REGISTRY.register()
class DukeMTMCSITracklet(DukeMTMCVideoReID):
    """DukeMTMC-SI-Tracklet ("Duke-T" in ACAN): ``<root>/DukeMTMC-SI-Tracklet/{train,query,gallery}/
    <pid>/<tracklet>/c<cam>_<frame>.jpg``, the release's layout (module docstring)."""
    dataset_dir = "DukeMTMC-SI-Tracklet"
    dataset_name = "dukemtmcsitracklet"
    release = "DukeMTMC-SI-Tracklet"

    @classmethod
    def fix(cls, root):
        return (f"put {cls.release} at {os.path.join(root, cls.dataset_dir)}/{{{','.join(SPLITS)}}}/<pid>/<tracklet>/"
                "c<cam>_<frame>.jpg (the release's folders, unchanged), or set FASTREID_DATASETS (--root) to the "
                "folder that holds it")

    def _parse_frame(self, path, pid, fix):
        """(frame number, camera 1-based) of a ``c<cam>_<frame>.jpg`` file; the identity is the folder's."""
        match = SI_FRAME_NAME.fullmatch(os.path.basename(path))
        if match is None:
            raise CanuError(f"cannot read frame {path}: names must be c<cam>_<frame>.jpg (e.g. c6_030823.jpg): {fix}")
        if not 1 <= int(match.group(1)) <= MAX_CAMERA:
            raise CanuError(f"frame {path}: camera {match.group(1)} outside 1..{MAX_CAMERA}: {fix}")
        return int(match.group(2)), int(match.group(1))


__all__ = ["DukeMTMCVideoReID", "DukeMTMCSITracklet", "FRAME_NAME", "SI_FRAME_NAME"]
