"""Building blocks of pseudo-label training: the unlabelled target set, the pseudo-labelled
loader of an epoch, and the optimizer bookkeeping when the classifier is re-sized."""
import logging

import numpy as np
from fastreid.data import build_reid_train_loader
from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.samplers import NaiveIdentitySampler, TrainingSampler
from fastreid.data.transforms import build_transforms
from fastreid.utils import comm

from canu_plugin.data.video import is_tracklet_items
from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)


class TargetSet:
    """The unlabelled target training set: image paths and cameras (and, for diagnostics only,
    the ground-truth ids the dataset carries).

    Attributes:
        paths: list of N image paths.
        camids: (N,) int64 camera index in [0, C).
        gt: (N,) int64 ground-truth id index (never used for training).
    """

    def __init__(self, items):
        if not items:
            raise CanuError("the target training set is empty: check DATASETS.NAMES and FASTREID_DATASETS")
        self.paths = [it[0] for it in items]
        self.camids = _index(it[2] for it in items)
        self.gt = _index(it[1] for it in items)

    @classmethod
    def from_config(cls, cfg, root):
        """Train items of every dataset in ``cfg.DATASETS.NAMES`` (fast-reid's parsers)."""
        items = []
        for name in cfg.DATASETS.NAMES:
            data = DATASET_REGISTRY.get(name)(root=root, combineall=cfg.DATASETS.COMBINEALL)
            items.extend(data.train)
        return cls(items)

    def __len__(self):
        return len(self.paths)

    def items(self, labels=None):
        """fast-reid items ``(path, label, camid)``; with ``labels`` (N,), outliers (-1) are dropped."""
        if labels is None:
            return [(p, 0, int(c)) for p, c in zip(self.paths, self.camids)]
        return [(p, int(lab), int(c)) for p, lab, c in zip(self.paths, labels, self.camids) if lab >= 0]


def _index(values):
    values = list(values)
    uniq = {v: i for i, v in enumerate(sorted(set(values), key=str))}
    return np.array([uniq[v] for v in values], dtype=np.int64)


def train_dataset(cfg, items, relabel):
    """fast-reid's ``CommDataset`` with the training transforms; for ``MODEL.META_ARCHITECTURE``
    MMT a :class:`~canu_plugin.data.two_view.TwoViewDataset` (items also carry ``"images_2"``);
    for tracklet items a :class:`~canu_plugin.data.video.clips.VideoClipDataset` ((T, 3, H, W) clips)."""
    transforms = build_transforms(cfg, is_train=True)
    if is_tracklet_items(items):  # tracklets (video datasets): T-frame clips (VIDEO.*)
        from canu_plugin.data.video.clips import VideoClipDataset, clip_options
        return VideoClipDataset(items, transforms, relabel=relabel, **clip_options(cfg))
    if cfg.MODEL.META_ARCHITECTURE == "MMT":
        from canu_plugin.data.two_view import TwoViewDataset
        return TwoViewDataset(items, transforms, relabel=relabel)
    return CommDataset(items, transforms, relabel=relabel)


def placeholder_loader(cfg, target):
    """The loader DefaultTrainer is built with before the first clustering: one class, no workers.

    Its length fixes ``iters_per_epoch`` = N // IMS_PER_BATCH, as in fast-reid.
    """
    dataset = train_dataset(cfg, target.items(), relabel=True)
    return build_reid_train_loader(train_set=dataset, sampler=TrainingSampler(len(dataset)),
                                   total_batch_size=cfg.SOLVER.IMS_PER_BATCH, num_workers=0)


def pseudo_loader(cfg, target, labels, seed):
    """P x K identity-sampled loader over the clustered (non-outlier) samples of one epoch.

    Args:
        target: :class:`TargetSet` of N samples.
        labels: (N,) pseudo-labels in [0, K), -1 = outlier (dropped).
        seed: sampler seed (SEED + epoch), identical on every rank.
    """
    items = target.items(labels)
    mini_batch = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    num_instance = cfg.DATALOADER.NUM_INSTANCE
    num_clusters = len(set(it[1] for it in items))
    if num_clusters < max(mini_batch // num_instance, 1):
        raise CanuError(f"only {num_clusters} clusters, fewer than the {mini_batch // num_instance} identities "
                        "a P x K batch needs (SOLVER.IMS_PER_BATCH / DATALOADER.NUM_INSTANCE)")
    dataset = train_dataset(cfg, items, relabel=False)
    sampler = NaiveIdentitySampler(items, mini_batch, num_instance, seed=seed)
    return build_reid_train_loader(train_set=dataset, sampler=sampler,
                                   total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                                   num_workers=cfg.DATALOADER.NUM_WORKERS)


def swap_parameter(optimizer, old, new, keep_state=False):
    """Put ``new`` where ``old`` is in the optimizer's param groups and reset (or move) its state.

    Args:
        keep_state: move the old state to the new parameter when the shapes agree (resume).
    """
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is old:
                group["params"][i] = new
                state = optimizer.state.pop(old, None)
                if keep_state and state and all(
                        not hasattr(v, "shape") or v.dim() == 0 or v.shape == new.shape for v in state.values()):
                    optimizer.state[new] = state
                return
    raise ValueError("parameter to replace is not in the optimizer")
