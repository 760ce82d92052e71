"""Camera-specific feature normalization and the single-camera cluster rule (Song, Park and Lee,
"Exploring the Camera Bias of Person Re-identification", ICLR 2025): the simplest camera debiasing,
the rival CANU is measured against.

* :func:`camera_normalize`: ``f' = (f - m_cam) / s_cam``, each camera's per-dimension mean and standard
  deviation over the set given (the clustered target set; at test time query and gallery together).
* :func:`discard_single_camera`: clusters whose images all come from one camera become outliers (-1): the
  clusters that stayed camera-biased after normalization (our reading of the paper's rule; docs/methods.md).
"""
import numpy as np
import torch

from canu_plugin.errors import CanuError

STD_FLOOR = 1e-6  # a dimension constant within a camera (or a one-image camera) is centred, not divided by ~0


def _check(features, camids):
    n = features.shape[0]
    if features.ndim != 2 or len(camids) != n:
        raise CanuError(f"camera normalization needs (N, D) features and N camera ids, got features "
                        f"{tuple(features.shape)} and {len(camids)} camera ids: pass one camid per feature row")


def camera_normalize(features, camids):
    """Normalise each camera's features to zero mean and unit variance per dimension.

    Args:
        features: (N, D) float tensor or array; camids: (N,) camera ids (any integers).
    Returns:
        (N, D) of the input's kind (float32 array, or a float32 tensor on the input's device):
        ``(f - mean_cam) / max(std_cam, STD_FLOOR)``, population statistics of each camera's rows.
    """
    is_tensor = isinstance(features, torch.Tensor)
    x = features.detach().float() if is_tensor else torch.as_tensor(np.asarray(features, np.float32))
    cams = torch.as_tensor(np.asarray(camids.cpu() if isinstance(camids, torch.Tensor) else camids), dtype=torch.long)
    _check(x, cams)
    out = torch.empty_like(x)
    for cam in torch.unique(cams).tolist():
        rows = (cams == cam).nonzero().view(-1).to(x.device)
        part = x[rows].double()
        mean, std = part.mean(0), part.std(0, unbiased=False).clamp_min(STD_FLOOR)
        out[rows] = ((part - mean) / std).float()
    return out if is_tensor else out.numpy()


def discard_single_camera(labels, camids):
    """Make every cluster whose members all share one camera an outlier, and renumber the rest.

    Args:
        labels: (N,) int cluster labels, -1 = outlier; camids: (N,) camera ids.
    Returns:
        (labels (N,) int64 with the kept clusters numbered 0..K'-1 in their old order, number discarded).
    """
    labels = np.asarray(labels, np.int64)
    cams = np.asarray(camids, np.int64)
    if len(cams) != len(labels):
        raise CanuError(f"{len(labels)} labels but {len(cams)} camera ids: pass one camid per clustered image")
    clustered = labels >= 0
    if not clustered.any():
        return labels.copy(), 0
    k = int(labels.max()) + 1
    pairs = np.unique(np.stack([labels[clustered], cams[clustered]], 1), axis=0)
    cameras_per_cluster = np.bincount(pairs[:, 0], minlength=k)
    keep = cameras_per_cluster >= 2  # (empty ids, if any, count 0 and are dropped from the numbering too)
    new_id = np.full(k, -1, np.int64)
    new_id[keep] = np.arange(int(keep.sum()))
    out = np.full_like(labels, -1)
    out[clustered] = new_id[labels[clustered]]
    return out, int((cameras_per_cluster == 1).sum())


__all__ = ["STD_FLOOR", "camera_normalize", "discard_single_camera"]
