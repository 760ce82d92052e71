"""ACAN's setting: identities labelled independently inside each camera.

:func:`intra_camera_items` turns any fast-reid train list ``(path, pid, camid)`` into
``(path, label, camera)`` where ``label`` indexes the (camera, pid) *pair*: a person seen by
cameras 1 and 3 gets two unrelated labels, so training never learns that they are one person.
Only the camera index (0..C-1) is shared, as the target of the camera discriminator.

Small cameras. ACAN draws P = 32 identities from one camera for a triplet group; the paper drops
MSMT17's second camera (15 identities, 193 images) for that reason and trains on 14 cameras
(Sec. IV-A, footnote 2). The rule here is the paper's, generalised: a camera with fewer than P
identities is dropped, with a warning (``MODEL.ACAN.DROP_SMALL_CAMERAS``; False = error); with the
default P = 32 it drops MSMT17's camera 2 as the paper does. The paper states no other
dataset-specific protocol (Market-1501 and DukeMTMC-reID use all their cameras).

:func:`build_acan_train_loader` is what :class:`canu_plugin.engine.Trainer` calls when
``MODEL.ACAN.ENABLED``: one loader whose batches hold the triplet part then the camera-balanced
part (:mod:`canu_plugin.data.samplers`), every sample carrying ``acan_part`` (0 / 1).
"""
import logging
from collections import defaultdict

from fastreid.data import build_reid_train_loader
from fastreid.data.common import CommDataset
from fastreid.data.transforms import build_transforms
from fastreid.utils import comm

from canu_plugin.data.cameras import camera_name, camera_names
from canu_plugin.data.datasets import train_items
from canu_plugin.data.keys import CAMERA_PART, PART_KEY, TRIPLET_PART
from canu_plugin.data.labels import natural_key
from canu_plugin.data.samplers import ACANSampler, CameraBalancedSampler, PerCameraIdentitySampler
from canu_plugin.data.video.base import is_tracklet_items
from canu_plugin.errors import CanuError

logger = logging.getLogger(__name__)


def intra_camera_items(items, min_ids_per_camera=1, drop_small=True):
    """Relabel identities per camera.

    Args:
        items: list of N fast-reid items ``(path, pid, camid)``, pid / camid any hashable
            (fast-reid's train lists use "<dataset>_<id>" strings).
        min_ids_per_camera: cameras with fewer identities are dropped (``drop_small``) or refused.
        drop_small: True drops them with a warning; False raises CanuError.
    Returns:
        (new_items, info): new_items is a list of ``(path, label, camera)`` (ints; label in
        [0, L) unique to one (camera, pid) pair, camera in [0, C) in natural order of the original
        camids); info has "cameras" (the C original camids kept), "dropped" ({camid: #ids}),
        "num_labels" (L).
    """
    if not items:
        raise CanuError("the training set is empty: check DATASETS.NAMES and FASTREID_DATASETS")
    ids = defaultdict(set)
    for _, pid, cam in items:
        ids[cam].add(pid)
    small = {cam: len(p) for cam, p in ids.items() if len(p) < min_ids_per_camera}
    if small and not drop_small:
        raise CanuError(f"camera(s) {_with_counts(small)} have fewer than {min_ids_per_camera} identities "
                        "(MODEL.ACAN.PIDS_PER_GROUP): set MODEL.ACAN.DROP_SMALL_CAMERAS True to drop them (the "
                        "paper's MSMT17 protocol) or lower MODEL.ACAN.PIDS_PER_GROUP")
    cameras = sorted((c for c in ids if c not in small), key=natural_key)
    if len(cameras) < 2:
        raise CanuError(f"only {len(cameras)} camera(s) have at least {min_ids_per_camera} identities: ACAN needs "
                        "two or more; lower MODEL.ACAN.PIDS_PER_GROUP")
    cam_index = {c: i for i, c in enumerate(cameras)}
    pairs = sorted({(cam_index[c], p) for _, p, c in items if c in cam_index}, key=lambda t: (t[0], natural_key(t[1])))
    label_of = {pair: i for i, pair in enumerate(pairs)}
    new = [(path, label_of[(cam_index[c], p)], cam_index[c]) for path, p, c in items if c in cam_index]
    if small:
        logger.warning(f"ACAN: dropped camera(s) {_with_counts(small)} with fewer than {min_ids_per_camera} "
                       f"identities (MODEL.ACAN.PIDS_PER_GROUP); training on {len(cameras)} cameras")
    return new, {"cameras": cameras, "dropped": small, "num_labels": len(pairs)}


def _with_counts(ids_per_camera):
    """{camid: identities} as "msmt17 02 (15 identities), ...", cameras as the release names them."""
    return ", ".join(f"{camera_name(c)} ({n} identities)" for c, n in sorted(ids_per_camera.items(),
                                                                          key=lambda t: natural_key(t[0])))


class IntraCameraDataset(CommDataset):
    """fast-reid dataset of intra-camera-labelled items; ``num_classes`` = number of per-camera
    identities, ``num_cameras`` = C.

    ``dataset[i]`` or ``dataset[(i, part)]`` returns fast-reid's dict (images (3, H, W),
    targets, camids, img_paths) plus ``acan_part`` (``part``; 0 when only ``i`` is given).
    """

    def __init__(self, items, transform=None, cameras=None):
        super().__init__(items, transform, relabel=False)
        self.camera_names = list(cameras) if cameras is not None else list(self.cams)

    def __getitem__(self, key):
        index, part = key if isinstance(key, tuple) else (key, TRIPLET_PART)
        out = super().__getitem__(int(index))
        out[PART_KEY] = int(part)
        return out


def acan_batch_sizes(cfg, num_cameras):
    """(P, K, groups per batch, images per camera) of the global batch, from the config.

    The triplet part is ``SOLVER.IMS_PER_BATCH`` images = groups x P x K
    (P = ``MODEL.ACAN.PIDS_PER_GROUP``, K = ``DATALOADER.NUM_INSTANCE``); the camera-balanced
    part is floor(``MODEL.ACAN.CAMERA_BATCH`` / C) images per camera.
    """
    P, K, total = cfg.MODEL.ACAN.PIDS_PER_GROUP, cfg.DATALOADER.NUM_INSTANCE, cfg.SOLVER.IMS_PER_BATCH
    if P < 1 or K < 1 or total % (P * K):
        raise CanuError(f"SOLVER.IMS_PER_BATCH ({total}) must be a multiple of MODEL.ACAN.PIDS_PER_GROUP x "
                        f"DATALOADER.NUM_INSTANCE ({P} x {K}): ACAN's triplet part is made of P x K groups")
    per_camera = cfg.MODEL.ACAN.CAMERA_BATCH // num_cameras
    if per_camera < comm.get_world_size():
        raise CanuError(f"MODEL.ACAN.CAMERA_BATCH ({cfg.MODEL.ACAN.CAMERA_BATCH}) gives {per_camera} image(s) per "
                        f"camera for {num_cameras} cameras and {comm.get_world_size()} rank(s): raise it to at least "
                        f"{num_cameras * comm.get_world_size()}")
    return P, K, total // (P * K), per_camera


def build_acan_dataset(cfg, root, transform=None):
    """The intra-camera-labelled training set of ``cfg.DATASETS.NAMES`` (fast-reid's parsers); for
    tracklet datasets a :class:`~canu_plugin.data.video.clips.VideoIntraCameraDataset` (labels per
    tracklet: one per (camera, pid), as for images; ``VIDEO.*`` clips)."""
    items = train_items(cfg.DATASETS.NAMES, root, cfg.DATASETS.COMBINEALL)
    items, info = intra_camera_items(items, cfg.MODEL.ACAN.PIDS_PER_GROUP, cfg.MODEL.ACAN.DROP_SMALL_CAMERAS)
    logger.info(f"ACAN: {info['num_labels']} per-camera identities over {len(info['cameras'])} cameras "
                f"({camera_names(info['cameras'])})")
    if is_tracklet_items(items):  # tracklets (video datasets): T-frame clips
        from canu_plugin.data.video.clips import VideoIntraCameraDataset, clip_options
        return VideoIntraCameraDataset(items, transform, cameras=info["cameras"], **clip_options(cfg))
    return IntraCameraDataset(items, transform, cameras=info["cameras"])


def build_acan_train_loader(cfg, root):
    """fast-reid train loader of ACAN batches (triplet part, then camera-balanced part).

    Args:
        cfg: config with ``MODEL.ACAN.*``, ``SOLVER.IMS_PER_BATCH``, ``DATALOADER.*``.
        root: dataset root.
    Returns:
        the loader; ``loader.dataset`` is an :class:`IntraCameraDataset` (``num_cameras`` = C,
        ``num_classes`` = per-camera identities). Each rank's batch has
        IMS_PER_BATCH / W triplet samples then C x floor(floor(CAMERA_BATCH / C) / W) others.
    """
    dataset = build_acan_dataset(cfg, root, build_transforms(cfg, is_train=True))
    P, K, groups, per_camera = acan_batch_sizes(cfg, dataset.num_cameras)
    seed = None if cfg.MODEL.ACAN.SAMPLER_SEED < 0 else cfg.MODEL.ACAN.SAMPLER_SEED
    try:
        triplet = PerCameraIdentitySampler(dataset.img_items, P, K, groups, seed=seed)
        balanced = CameraBalancedSampler([it[2] for it in dataset.img_items], per_camera, seed=seed)
    except ValueError as e:
        raise CanuError(f"cannot build ACAN batches: {e} (SOLVER.IMS_PER_BATCH, MODEL.ACAN.PIDS_PER_GROUP, "
                        "MODEL.ACAN.CAMERA_BATCH)") from e
    sampler = ACANSampler(triplet, balanced)
    return build_reid_train_loader(train_set=dataset, sampler=sampler,
                                   total_batch_size=sampler.batch_size * comm.get_world_size(),
                                   num_workers=cfg.DATALOADER.NUM_WORKERS)


__all__ = ["PART_KEY", "TRIPLET_PART", "CAMERA_PART", "intra_camera_items", "IntraCameraDataset",
           "acan_batch_sizes", "build_acan_dataset", "build_acan_train_loader"]
