"""Feature extraction over a list of images, sharded across ranks and gathered on rank 0."""

import torch
import torch.nn.functional as F
from fastreid.data import build_reid_test_loader
from fastreid.data.common import CommDataset
from fastreid.data.transforms import build_transforms
from fastreid.utils import comm

from canu_plugin.data.video import is_tracklet_items
from canu_plugin.distributed import unwrap


@torch.no_grad()
def extract_features(model, items, cfg, normalize=True, forward=None, flip=False):
    """Eval-mode embeddings of ``items`` with the test transforms.

    Every rank runs its shard (fast-reid's ``InferenceSampler``); the shards are gathered on
    rank 0 in the order of ``items``.

    Args:
        model: the (possibly DDP-wrapped) fast-reid model; its train/eval mode is restored.
        items: list of (img_path, pid, camid) of length N; tracklet items ``(frame_paths, pid, camid)``
            give pooled tracklet features (:func:`canu_plugin.engine.video.extract_tracklet_features`).
        cfg: config (INPUT.SIZE_TEST, TEST.IMS_PER_BATCH, DATALOADER.NUM_WORKERS).
        normalize: L2-normalise the features.
        forward: batch -> (B, D) features (default: the model itself, e.g. ``model.cluster_forward``).
        flip: average with the features of the horizontally flipped images (fast-reid's flip test).
    Returns:
        (N, D) float32 CPU tensor on rank 0; None on the other ranks.
    """
    if is_tracklet_items(items):  # tracklets (video datasets): frame features pooled per tracklet
        from canu_plugin.engine.video import extract_tracklet_features
        return extract_tracklet_features(model, items, cfg, normalize, forward=forward, flip=flip)
    module = unwrap(model)
    forward = forward or module
    dataset = CommDataset([(p, 0, 0) for p, _, _ in items], build_transforms(cfg, is_train=False),
                          relabel=False)
    loader, _ = build_reid_test_loader(test_set=dataset, test_batch_size=cfg.TEST.IMS_PER_BATCH,
                                       num_query=0, num_workers=cfg.DATALOADER.NUM_WORKERS)
    was_training = module.training
    module.eval()
    feats = []
    try:
        for batch in loader:
            out = forward(batch)
            if flip:
                out = (out + forward({**batch, "images": batch["images"].flip(dims=[3])})) / 2
            feats.append(out.float().cpu())
    finally:
        module.train(was_training)
    local = torch.cat(feats) if feats else torch.zeros(0, 0)
    shards = comm.gather(local, dst=0) if comm.get_world_size() > 1 else [local]
    if not comm.is_main_process():
        return None
    out = torch.cat([s for s in shards if s.numel()])
    assert out.size(0) == len(items), (out.shape, len(items))
    return F.normalize(out, dim=1) if normalize else out


__all__ = ["extract_features"]
