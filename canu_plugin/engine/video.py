"""Video (tracklet) re-ID in canu-plugin's trainer: what :class:`canu_plugin.engine.Trainer` hands
over to when its datasets are tracklet datasets (``is_video``: MARS, DukeMTMC-VideoReID,
DukeMTMC-SI-Tracklet, SynthVidA/B).

- Training (``DATASETS.NAMES`` are tracklet datasets): the model gets temporal pooling
  (:func:`prepare_model`); batches hold ``SOLVER.IMS_PER_BATCH`` tracklets of ``VIDEO.SEQ_LEN``
  frames. ACAN's loader (:func:`canu_plugin.data.intra_camera.build_acan_train_loader`) and the
  pseudo-label loader (:func:`canu_plugin.data.pseudo_labels.pseudo_label_loader`) switch to clip datasets by
  themselves when their items are tracklets; a supervised run uses :func:`build_video_train_loader`.
- Testing (a tracklet dataset in ``DATASETS.TESTS``, whatever the training data): every frame (or
  ``VIDEO.TEST_FRAMES``) of the query and gallery tracklets in batches of ``TEST.IMS_PER_BATCH``
  frames, pooled per tracklet by :class:`canu_plugin.evaluation.video.VideoReidEvaluator`.
- Feature extraction for clustering and diagnostics: :func:`extract_tracklet_features` (what
  :func:`canu_plugin.engine.features.extract_features` calls for tracklet items).
"""
import torch
import torch.nn.functional as F
from fastreid.data import build_reid_test_loader, build_reid_train_loader
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.transforms import build_transforms
from fastreid.utils import comm

from canu_plugin.data.datasets import train_items
from canu_plugin.data.video import queries_in_gallery, uses_video
from canu_plugin.distributed import unwrap
from canu_plugin.data.video.clips import TRACKLET_KEY, TrackletFrames, VideoClipDataset, clip_options
from canu_plugin.errors import CanuError
from canu_plugin.evaluation.video import TrackletPooler, VideoReidEvaluator, gather_poolers
from canu_plugin.modeling.video import frame_outputs, install_temporal_pooling


def trains_on_video(cfg):
    """True when ``DATASETS.NAMES`` are tracklet datasets (CanuError for a mix with images)."""
    return uses_video(cfg.DATASETS.NAMES)


def pooling_method(cfg):
    """The temporal pooling of the model built from ``cfg``: ``VIDEO.POOLING`` when it trains on
    tracklets, else "avg" (an image model's frame embeddings are averaged per tracklet)."""
    return cfg.VIDEO.POOLING if trains_on_video(cfg) else "avg"


def prepare_model(cfg, model):
    """Install temporal pooling in ``model`` when it trains on tracklets; returns the model."""
    if trains_on_video(cfg):
        install_temporal_pooling(model, cfg.VIDEO.POOLING, cfg.MODEL.BACKBONE.FEAT_DIM)
    return model


def build_video_train_loader(cfg, root):
    """Supervised training on tracklets: fast-reid's train loader (``DATALOADER.SAMPLER_TRAIN``)
    over a :class:`VideoClipDataset` of the ``DATASETS.NAMES`` train tracklets; batches are
    {"images": (B, T, 3, H, W), "targets": (B,), "camids": (B,), ...}."""
    items = train_items(cfg.DATASETS.NAMES, root, cfg.DATASETS.COMBINEALL)
    dataset = VideoClipDataset(items, build_transforms(cfg, is_train=True), relabel=True, **clip_options(cfg))
    return build_reid_train_loader(cfg, train_set=dataset)


def _frame_loader(cfg, items):
    """Inference loader over the frames of ``items`` (tracklets), in tracklet order."""
    frames = TrackletFrames(items, build_transforms(cfg, is_train=False), cfg.VIDEO.TEST_FRAMES)
    loader, _ = build_reid_test_loader(test_set=frames, test_batch_size=cfg.TEST.IMS_PER_BATCH, num_query=0,
                                       num_workers=cfg.DATALOADER.NUM_WORKERS)
    return loader


def build_video_test_loader(cfg, dataset_name, root):
    """(frame loader of the query then gallery tracklets, number of query tracklets)."""
    data = DATASET_REGISTRY.get(dataset_name)(root=root)
    if comm.is_main_process():
        data.show_test()
    if not data.query or not data.gallery:
        raise CanuError(f"{dataset_name} has {len(data.query)} query and {len(data.gallery)} gallery tracklets: "
                        "both must be non-empty (check its info files / folders)")
    return _frame_loader(cfg, data.query + data.gallery), len(data.query)


def build_video_evaluator(cfg, data_loader, num_query, output_dir=None, dataset_name=None):
    """The tracklet evaluator for a loader of :func:`build_video_test_loader` of ``dataset_name``,
    under ``TEST.VIDEO_PROTOCOL`` (None: no dataset convention, the queries stay out of the gallery)."""
    protocol = cfg.TEST.VIDEO_PROTOCOL
    with_q = queries_in_gallery(dataset_name, protocol)
    return VideoReidEvaluator(cfg, num_query, data_loader.dataset.num_tracklets, pooling_method(cfg), output_dir,
                              query_in_gallery=with_q, protocol=protocol)


@torch.no_grad()
def extract_tracklet_features(model, items, cfg, normalize=True, forward=None, flip=False):
    """Eval-mode tracklet features: every frame (or ``VIDEO.TEST_FRAMES``) embedded in batches of
    ``TEST.IMS_PER_BATCH`` frames (each rank its shard) and pooled per tracklet, gathered on rank 0.

    Args:
        model: the (possibly DDP-wrapped) model; its train/eval mode is restored.
        items: N tracklet items ``(frame_paths, pid, camid)``.
        normalize: L2-normalise the features.
        forward: frames batch -> (B, D) frame features (default: the model itself);
        flip: average each frame's features with its horizontal flip's.
    Returns:
        (N, D) float32 CPU tensor on rank 0; None on the other ranks.
    """
    module = unwrap(model)
    forward = forward or module
    loader, method = _frame_loader(cfg, [(it[0], 0, 0) for it in items]), pooling_method(cfg)
    pooler = TrackletPooler(len(items))
    was_training = module.training
    module.eval()
    try:
        for batch in loader:
            out = forward(batch)
            if flip:
                out = (out + forward({**batch, "images": batch["images"].flip(dims=[3])})) / 2
            feats, scores = frame_outputs(out.float(), method)
            pooler.add(batch[TRACKLET_KEY], feats, scores if method == "attention" else None)
    finally:
        module.train(was_training)
    pooler = gather_poolers(pooler)
    if pooler is None:
        return None
    out = pooler.features()
    return F.normalize(out, dim=1) if normalize else out


__all__ = ["trains_on_video", "pooling_method", "prepare_model", "build_video_train_loader",
           "build_video_test_loader", "build_video_evaluator", "extract_tracklet_features"]
