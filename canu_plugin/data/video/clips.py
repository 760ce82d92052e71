"""Frame sampling and the datasets that read tracklets: T-frame clips for training, every frame
(or T evenly spaced ones) for inference.

:func:`frame_indices` has torchreid's video sampling semantics (``VideoDataset.__getitem__``):

- ``random``: T indices drawn without replacement (with replacement when the tracklet is shorter
  than T), sorted to keep the temporal order;
- ``evenly``: the tracklet cut to a multiple of T, then every (n // T)-th frame from the first;
  a shorter tracklet is padded with its last frame;
- ``all``: every frame (T ignored), for inference; clips of unequal length cannot be batched, so
  training refuses it.

:class:`VideoClipDataset` is fast-reid's ``CommDataset`` over tracklets: item i is fast-reid's dict
with ``images`` (T, 3, H, W), the tracklet's ``targets`` / ``camids`` and ``img_paths`` = its first
frame path (the tracklet's key). With ``consistent`` (``VIDEO.CONSISTENT_AUG``) the T frames get
the same random augmentation (flip, crop, erasing ...): the RNG states are rewound before each
frame. :class:`TrackletFrames` lists the frames of many tracklets for inference, each carrying its
tracklet index (``tracklets``), which the tracklet feature pooler reads.
"""
import random

import numpy as np
import torch
from fastreid.data import common
from fastreid.data.common import CommDataset
from torch.utils.data import Dataset

from canu_plugin.data.intra_camera import IntraCameraDataset
from canu_plugin.errors import CanuError

METHODS = ("random", "evenly", "all")
TRAIN_METHODS = ("random", "evenly")
TRACKLET_KEY = "tracklets"  # batch field of TrackletFrames: index of each frame's tracklet


def frame_indices(num_frames, seq_len, method="random", rng=np.random):
    """Indices of the frames a clip takes from a tracklet (torchreid's semantics, module docstring).

    Args:
        num_frames: n >= 1 frames in the tracklet; seq_len: T >= 1 (ignored by "all").
        method: "random", "evenly" or "all"; rng: numpy Generator or ``np.random`` (random only).
    Returns:
        (T,) int64 array in [0, n) ((n,) for "all").
    """
    n, T = int(num_frames), int(seq_len)
    if n < 1:
        raise CanuError("a tracklet has no frame: check the dataset's name lists / folders")
    if method == "all":
        return np.arange(n, dtype=np.int64)
    if method not in METHODS or T < 1:
        raise CanuError(f"frame sampling {method!r} with T={T}: use one of {METHODS} with VIDEO.SEQ_LEN >= 1")
    if method == "random":
        return np.sort(np.asarray(rng.choice(n, size=T, replace=n < T), dtype=np.int64))
    if n >= T:
        n -= n % T
        return np.arange(0, n, n // T, dtype=np.int64)
    return np.concatenate([np.arange(n), np.full(T - n, n - 1)]).astype(np.int64)


def _rng_states():
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_rng_states(states):
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


def transform_clip(images, transform, consistent=True):
    """Apply ``transform`` (PIL image -> (3, H, W) tensor) to each frame; stack to (T, 3, H, W).

    With ``consistent``, python / numpy / torch RNG states are rewound before every frame, so the
    random augmentations are drawn once per clip.
    """
    if not consistent:
        return torch.stack([transform(im) for im in images])
    states, out = _rng_states(), []
    for im in images:
        _set_rng_states(states)
        out.append(transform(im))
    return torch.stack(out)


class VideoClipDataset(CommDataset):
    """fast-reid ``CommDataset`` of tracklets ``(frame_paths, pid, camid)`` returning T-frame clips.

    Args:
        img_items: tracklet items; transform: fast-reid training transforms (per frame);
        relabel: as fast-reid's; seq_len: T; sample: "random" or "evenly"; consistent: one
        augmentation per clip.
    ``dataset[i]``: {"images": (T, 3, H, W) float, "targets", "camids", "img_paths": first frame path}.
    """

    def __init__(self, img_items, transform=None, relabel=True, seq_len=4, sample="random", consistent=True):
        super().__init__(img_items, transform, relabel)
        self.set_sampling(seq_len, sample, consistent)

    def set_sampling(self, seq_len, sample, consistent=True):
        """Frames per clip and how they are drawn (see :func:`frame_indices`)."""
        if sample not in TRAIN_METHODS:
            raise CanuError(f"VIDEO.SAMPLE {sample!r} cannot train: clips of every length cannot be batched; use one "
                            f"of {TRAIN_METHODS} (every frame is used at test time, VIDEO.TEST_FRAMES 0)")
        self.seq_len, self.sample, self.consistent = int(seq_len), sample, bool(consistent)
        return self

    def __getitem__(self, index):
        paths, pid, camid = self.img_items[index][:3]
        idx = frame_indices(len(paths), self.seq_len, self.sample)
        images = transform_clip([common.read_image(paths[i]) for i in idx], self.transform, self.consistent)
        if self.relabel:
            pid, camid = self.pid_dict[pid], self.cam_dict[camid]
        return {"images": images, "targets": pid, "camids": camid, "img_paths": paths[0]}


class VideoIntraCameraDataset(IntraCameraDataset, VideoClipDataset):
    """ACAN's intra-camera-labelled dataset on tracklets: ``IntraCameraDataset``'s ``(index, part)``
    access and ``acan_part`` field, with ``images`` a (T, 3, H, W) clip."""

    def __init__(self, items, transform=None, cameras=None, seq_len=4, sample="random", consistent=True):
        super().__init__(items, transform, cameras=cameras)
        self.set_sampling(seq_len, sample, consistent)


class TrackletFrames(Dataset):
    """Every frame (``frames`` 0) or ``frames`` evenly spaced frames of each tracklet, in tracklet
    order, for inference.

    ``dataset[j]``: {"images": (3, H, W), "targets": the tracklet's pid (0 when not an int),
    "camids": its camid (0 when not an int), "tracklets": tracklet index, "img_paths": frame path}.
    Attributes: num_tracklets.
    """

    def __init__(self, items, transform, frames=0):
        self.items, self.transform = items, transform
        method = "all" if int(frames) <= 0 else "evenly"
        self.frames = [(t, it[0][i]) for t, it in enumerate(items)
                       for i in frame_indices(len(it[0]), max(int(frames), 1), method)]
        self.num_tracklets = len(items)

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        t, path = self.frames[index]
        _, pid, camid = self.items[t][:3]
        return {"images": self.transform(common.read_image(path)), "targets": pid if isinstance(pid, int) else 0,
                "camids": camid if isinstance(camid, int) else 0, TRACKLET_KEY: t, "img_paths": path}


def clip_options(cfg):
    """Keyword arguments of the clip datasets from ``cfg.VIDEO``."""
    return {"seq_len": cfg.VIDEO.SEQ_LEN, "sample": cfg.VIDEO.SAMPLE, "consistent": cfg.VIDEO.CONSISTENT_AUG}


__all__ = ["METHODS", "TRACKLET_KEY", "frame_indices", "transform_clip", "VideoClipDataset", "VideoIntraCameraDataset",
           "TrackletFrames", "clip_options"]
