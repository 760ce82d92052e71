"""The data side of pseudo-label training: the unlabelled target set, one clustering's result
(:class:`PseudoLabels`), and the loader that trains on it.

The path of a pseudo-label (docs/layout.md): the engine's label generator clusters the target set
into a :class:`PseudoLabels`; the trainer installs it with :func:`pseudo_label_loader` (this
module) and the model's ``install_clusters`` (``modeling/contract.py``).
"""
import dataclasses
import logging

import numpy as np
import torch
from fastreid.data import build_reid_train_loader
from fastreid.data.common import CommDataset
from fastreid.data.samplers import BalancedIdentitySampler, NaiveIdentitySampler, TrainingSampler
from fastreid.data.transforms import build_transforms
from fastreid.utils import comm

from canu_plugin.data.cameras import camera_name
from canu_plugin.data.datasets import train_items
from canu_plugin.data.keys import SECOND_VIEW, VIEW_TARGETS
from canu_plugin.data.labels import index_labels
from canu_plugin.data.video.base import is_tracklet_items
from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)


class TargetSet:
    """The unlabelled target training set: image paths and cameras (and, for diagnostics only,
    the ground-truth ids the dataset carries).

    Attributes:
        paths: list of N image paths.
        camids: (N,) int64 camera index in [0, C).
        camera_names: the C cameras as their release names them (``camera_names[camids[i]]``, for logs).
        gt: (N,) int64 ground-truth id index (never used for training).
    """

    def __init__(self, items):
        if not items:
            raise CanuError("the target training set is empty: check DATASETS.NAMES and FASTREID_DATASETS")
        self.paths = [it[0] for it in items]
        self.camids, cams = index_labels(it[2] for it in items)
        self.camera_names = [camera_name(c) for c in cams]
        self.gt = index_labels(it[1] for it in items)[0]

    @classmethod
    def from_config(cls, cfg, root):
        """Train items of every dataset in ``cfg.DATASETS.NAMES`` (fast-reid's parsers)."""
        return cls(train_items(cfg.DATASETS.NAMES, root, cfg.DATASETS.COMBINEALL, show=False))

    def __len__(self):
        return len(self.paths)

    @property
    def num_cameras(self):
        """C, the number of cameras."""
        return int(self.camids.max()) + 1

    def items(self, labels=None):
        """fast-reid items ``(path, label, camid)``; with ``labels`` (N,), outliers (-1) are dropped."""
        if labels is None:
            return [(p, 0, int(c)) for p, c in zip(self.paths, self.camids)]
        return [(p, int(lab), int(c)) for p, lab, c in zip(self.paths, labels, self.camids) if lab >= 0]


class SourceSet:
    """The labelled source set trained beside the target's clusters (``PSEUDO.TRAIN_SOURCE``).

    Attributes:
        paths: list of M image paths.
        labels: (M,) int64 identity index in [0, S) (:func:`~canu_plugin.data.labels.index_labels`).
        camids: (M,) int64 camera index of the source's own cameras.
    """

    def __init__(self, items):
        if not items:
            raise CanuError("PSEUDO.TRAIN_SOURCE: the source training set is empty: check "
                            "PSEUDO.SOURCE_DATASETS and FASTREID_DATASETS")
        self.paths = [it[0] for it in items]
        self.labels = index_labels(it[1] for it in items)[0]
        self.camids = index_labels(it[2] for it in items)[0]

    @classmethod
    def from_config(cls, cfg, root):
        """Train items of every dataset in ``cfg.PSEUDO.SOURCE_DATASETS`` (fast-reid's parsers)."""
        return cls(train_items(cfg.PSEUDO.SOURCE_DATASETS, root, show=False))

    def __len__(self):
        return len(self.paths)

    @property
    def num_ids(self):
        """S, the number of source identities."""
        return int(self.labels.max()) + 1

    def items(self, label_offset=0, camera_offset=0):
        """fast-reid items ``(path, label + label_offset, camid + camera_offset)``: the offsets put the
        source identities after the K clusters and its cameras after the target's C."""
        return [(p, int(lab) + label_offset, int(c) + camera_offset)
                for p, lab, c in zip(self.paths, self.labels, self.camids)]


@dataclasses.dataclass(frozen=True)
class PseudoLabels:
    """One clustering of a target set: what the loader trains on and what the model installs.

    Attributes:
        labels: (N,) int64 cluster of every target sample, -1 = outlier (dropped from training).
        centroids: (K, D) float32 CPU tensor, mean clustering feature of each cluster (view 0).
        epoch: the epoch whose features were clustered.
        view_labels: (N, V-1) int64 labels of the model's other clustering views (SSG's parts) or None.
        eps: the DBSCAN radius each view used (kept by ``EPS_RULE quantile_once``); () for k-means.
        source_centroids: (S, D) float32 mean feature of each labelled source identity trained beside
            the clusters (``PSEUDO.TRAIN_SOURCE``), or None.
        info: timings and diagnostics of the clustering (not saved).
    """
    labels: np.ndarray
    centroids: torch.Tensor
    epoch: int
    view_labels: np.ndarray = None
    eps: tuple = ()
    source_centroids: torch.Tensor = None
    info: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def num_clusters(self):
        """K."""
        return int(self.centroids.shape[0])

    @property
    def classifier_centroids(self):
        """(K [+ S], D): a row per class the ID classifier has, the K clusters then the S source ids."""
        if self.source_centroids is None:
            return self.centroids
        return torch.cat([self.centroids, self.source_centroids.to(self.centroids.dtype)])

    def trained(self, drop_view_outliers=True):
        """Which samples the loader trains on (``PSEUDO.DROP_VIEW_OUTLIERS``).

        Args:
            drop_view_outliers: also leave out the outliers (-1) of every other view (SSG's code drops
                a sample that is an outlier in any of its views); False: only view 0's outliers.
        Returns:
            (N,) bool.
        """
        keep = self.labels >= 0
        if drop_view_outliers and self.view_labels is not None:
            keep = keep & (self.view_labels >= 0).all(1)
        return keep

    def state_dict(self):
        """Tensors and numbers only (loadable with ``torch.load(weights_only=True)``)."""
        state = {"epoch": int(self.epoch), "labels": torch.from_numpy(self.labels), "centroids": self.centroids,
                 "eps": torch.tensor(self.eps, dtype=torch.float64)}
        if self.view_labels is not None:
            state["view_labels"] = torch.from_numpy(self.view_labels)
        if self.source_centroids is not None:
            state["source_centroids"] = self.source_centroids
        return state

    @classmethod
    def from_state_dict(cls, state):
        """The inverse of :meth:`state_dict`."""
        views = state.get("view_labels")
        return cls(labels=state["labels"].numpy().astype(np.int64), centroids=state["centroids"],
                   epoch=int(state["epoch"]), view_labels=None if views is None else views.numpy().astype(np.int64),
                   eps=tuple(float(e) for e in state.get("eps", torch.zeros(0)).tolist()),
                   source_centroids=state.get("source_centroids"))


def required_clusters(cfg):
    """The fewest clusters a P x K batch of this config can be drawn from (at least 2: negatives).

    fast-reid's identity samplers draw one global batch for all processes: each of the W processes
    takes ``(SOLVER.IMS_PER_BATCH // W) // NUM_INSTANCE`` identities, and identities that do not fill
    a whole global batch are dropped. With fewer clusters than one global batch needs, the sampler
    drops them all and loops forever without yielding (every process hangs), so the count is per
    global batch, not per process.
    """
    world = comm.get_world_size()
    per_process = (cfg.SOLVER.IMS_PER_BATCH // world) // cfg.DATALOADER.NUM_INSTANCE
    return max(per_process * world, 2)


class _KeepInput:
    """A transform that remembers its last input, so that a second draw needs no second read."""

    def __init__(self, transform):
        self.transform = transform
        self.last_input = None

    def __call__(self, img):
        self.last_input = img
        return self.transform(img)


class PseudoLabelDataset(CommDataset):
    """fast-reid's ``CommDataset`` of pseudo-labelled items, whose samples may also carry:

    - ``"images_2"`` (``num_views`` 2, MMT): a second, independent draw of the random training
      transforms on the same image, read from disk once;
    - ``"view_targets"`` (with ``view_labels``, SSG): (V-1,) labels of the other clustering views.
    fast-reid's collate stacks them: a batch holds ``images_2`` (B, 3, H, W), ``view_targets`` (B, V-1).
    """

    def __init__(self, img_items, transform=None, view_labels=None, num_views=1):
        if num_views not in (1, 2):
            raise ValueError(f"num_views must be 1 or 2, got {num_views}")
        if view_labels is not None and len(view_labels) != len(img_items):
            raise ValueError(f"{len(view_labels)} view-label rows for {len(img_items)} items")
        self.num_views = num_views
        keep = _KeepInput(transform) if transform is not None and num_views == 2 else transform
        super().__init__(img_items, keep, relabel=False)
        self.view_labels = None if view_labels is None else torch.as_tensor(view_labels, dtype=torch.long)

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if self.num_views == 2:
            item[SECOND_VIEW] = (item["images"] if self.transform is None
                                 else self.transform.transform(self.transform.last_input))
        if self.view_labels is not None:
            item[VIEW_TARGETS] = self.view_labels[index]
        return item


def _dataset(cfg, items, view_labels=None, num_views=1, relabel=False):
    """The training dataset of pseudo-labelled ``items``: a :class:`PseudoLabelDataset`, or for
    tracklets (video datasets) a clip dataset (``VIDEO.*``: T frames a tracklet)."""
    transforms = build_transforms(cfg, is_train=True)
    if is_tracklet_items(items):
        if num_views != 1 or view_labels is not None:
            raise CanuError("MMT and SSG train on images only: on tracklets use the pseudo-label baseline "
                            "(MODEL.META_ARCHITECTURE PseudoBaseline, with or without MODEL.CANU)")
        from canu_plugin.data.video.clips import VideoClipDataset, clip_options
        return VideoClipDataset(items, transforms, relabel=relabel, **clip_options(cfg))
    if relabel:
        return CommDataset(items, transforms, relabel=True)
    return PseudoLabelDataset(items, transforms, view_labels, num_views)


def placeholder_loader(cfg, target, source=None):
    """The loader DefaultTrainer is built with before the first clustering: one class, no workers.

    Its length fixes fast-reid's default ``iters_per_epoch`` = (N [+ M source images]) // IMS_PER_BATCH.
    """
    extra = [(p, 0, c) for p, _, c in source.items()] if source is not None else []
    dataset = _dataset(cfg, target.items() + extra, relabel=True)
    return build_reid_train_loader(train_set=dataset, sampler=TrainingSampler(len(dataset)),
                                   total_batch_size=cfg.SOLVER.IMS_PER_BATCH, num_workers=0)


# fast-reid's P x K samplers a pseudo-labelled loader can use (DATALOADER.SAMPLER_TRAIN)
IDENTITY_SAMPLERS = {"NaiveIdentitySampler": NaiveIdentitySampler,    # K images of each of P ids
                     "BalancedIdentitySampler": BalancedIdentitySampler}  # K-1 from other cameras (MMT)


def identity_sampler(name):
    """fast-reid's P x K sampler class called ``name`` (``DATALOADER.SAMPLER_TRAIN``).

    ``BalancedIdentitySampler`` draws, for each identity, one anchor image and its K-1 positives
    from cameras other than the anchor's whenever the identity has them (MMT's
    ``RandomMultipleGallerySampler``); ``NaiveIdentitySampler`` draws K images of the identity
    (also used for fast-reid's default ``TrainingSampler``, which knows no identities).
    """
    if name == "TrainingSampler":  # fast-reid's default: no identities; pseudo-labels train P x K
        logger.info("DATALOADER.SAMPLER_TRAIN TrainingSampler: pseudo-labels are sampled P x K with "
                    "NaiveIdentitySampler")
        return NaiveIdentitySampler
    if name not in IDENTITY_SAMPLERS:
        raise CanuError(f"DATALOADER.SAMPLER_TRAIN {name!r} cannot sample pseudo-identities: use one of "
                        f"{sorted(IDENTITY_SAMPLERS)} (P x K batches)")
    return IDENTITY_SAMPLERS[name]


def pseudo_label_loader(cfg, target, pseudo, seed, num_views=1, source=None):
    """P x K identity-sampled loader (``DATALOADER.SAMPLER_TRAIN``) over the clustered
    (non-outlier) samples of ``pseudo`` (:meth:`PseudoLabels.trained`: with
    ``PSEUDO.DROP_VIEW_OUTLIERS``, clustered in every view), and the labelled ``source`` beside them.

    Args:
        target: :class:`TargetSet` of N samples; pseudo: :class:`PseudoLabels` of it.
        seed: sampler seed (SEED + epoch), identical on every rank.
        num_views: augmented views per image the model trains on (``model.num_train_views``).
        source: None, or the :class:`SourceSet` trained beside the clusters (``PSEUDO.TRAIN_SOURCE``):
            its identities are labels K.. K+S-1, its cameras C.. (one view, no view labels).
    """
    keep = pseudo.trained(cfg.PSEUDO.DROP_VIEW_OUTLIERS)
    items = target.items(np.where(keep, pseudo.labels, -1))
    num_clusters = len(set(it[1] for it in items))
    if source is not None:
        if num_views != 1 or pseudo.view_labels is not None:
            raise CanuError("PSEUDO.TRAIN_SOURCE trains one view without part labels: use it with the "
                            "pseudo-label baseline (MODEL.META_ARCHITECTURE PseudoBaseline)")
        items = items + source.items(pseudo.num_clusters, target.num_cameras)
    if num_clusters < required_clusters(cfg):
        dropped = ("" if keep.sum() == (pseudo.labels >= 0).sum()
                   else " (PSEUDO.DROP_VIEW_OUTLIERS left out the outliers of the other views)")
        raise CanuError(f"only {num_clusters} clusters to train on{dropped}, fewer than the {required_clusters(cfg)} "
                        "identities a P x K batch needs (SOLVER.IMS_PER_BATCH / DATALOADER.NUM_INSTANCE)")
    views = None if pseudo.view_labels is None else pseudo.view_labels[keep]
    dataset = _dataset(cfg, items, views, num_views)
    mini_batch = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    sampler = identity_sampler(cfg.DATALOADER.SAMPLER_TRAIN)(items, mini_batch, cfg.DATALOADER.NUM_INSTANCE, seed=seed)
    return build_reid_train_loader(train_set=dataset, sampler=sampler, total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                                   num_workers=cfg.DATALOADER.NUM_WORKERS)


__all__ = ["TargetSet", "SourceSet", "PseudoLabels", "PseudoLabelDataset", "required_clusters", "placeholder_loader",
           "IDENTITY_SAMPLERS", "identity_sampler", "pseudo_label_loader"]
