"""ACAN's camera-alignment diagnostics, pure functions: inter-camera distance (Table VII) and the
discriminator's camera confusion matrix (Fig. 8); ``engine.diagnostic_hooks.ACANDiagnosticsHook``
computes them at each evaluation.

``d_inter-camera = (1/C) sum_c ||mean_c - mean||_2`` with ``mean_c`` the mean feature of camera c
and ``mean`` the mean of all samples. The paper does not say whether the features are
L2-normalised first. Its values (x100: 2.2 to 10.9, i.e. d of 0.02 to 0.11) only make sense for
unit-length features (raw pooled ResNet-50 features have norms in the tens), so normalising is
the default (``normalize=True``, ``MODEL.ACAN.DIAG_NORMALIZE``); ``normalize=False`` measures the
raw features.
"""
import numpy as np
import torch
import torch.nn.functional as F

from canu_plugin.data.labels import index_labels


def _index_and_count(camids):
    """(N,) int64 camera indices in [0, C) of any camera labels, and C."""
    index, uniq = index_labels(np.asarray(camids).reshape(-1).tolist())
    return index, len(uniq)


def d_inter_camera(features, camids, normalize=True):
    """Mean distance of the camera means to the overall mean (ACAN Table VII; lower = aligned).

    Args:
        features: (N, D) array or tensor.
        camids: (N,) camera labels (any values; C = number of distinct ones, C >= 1).
        normalize: L2-normalise every feature first (default, see the module docstring).
    Returns:
        float d >= 0.
    """
    feats = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features).double()
    if feats.dim() != 2 or feats.size(0) == 0:
        raise ValueError(f"features must be a non-empty (N, D) array, got shape {tuple(feats.shape)}")
    cams, num = _index_and_count(camids.cpu().numpy() if torch.is_tensor(camids) else camids)
    if len(cams) != feats.size(0):
        raise ValueError(f"{feats.size(0)} features but {len(cams)} camera ids")
    if normalize:
        feats = F.normalize(feats, dim=1)
    cams = torch.from_numpy(cams)
    means = torch.zeros(num, feats.size(1), dtype=feats.dtype).index_add_(0, cams, feats)
    means /= torch.bincount(cams, minlength=num).unsqueeze(1).to(feats.dtype)
    return float((means - feats.mean(0)).norm(dim=1).mean())


def camera_confusion(logits_or_preds, camids, num_cameras, soft=False):
    """Row-normalised camera confusion matrix of a discriminator.

    Args:
        logits_or_preds: (N, C) logits, or (N,) predicted camera indices.
        camids: (N,) true camera indices in [0, C).
        num_cameras: C.
        soft: with logits, average the softmax probabilities instead of counting argmaxes.
    Returns:
        (C, C) float64 numpy array: row = true camera, column = predicted camera; each row sums
        to 1 (a camera with no sample gives a row of zeros).
    """
    x = torch.as_tensor(logits_or_preds).detach().cpu()
    true = torch.as_tensor(camids).detach().cpu().long().reshape(-1)
    if x.dim() == 2 and x.size(1) != num_cameras:
        raise ValueError(f"logits have {x.size(1)} columns for {num_cameras} cameras")
    if x.dim() not in (1, 2) or x.size(0) != len(true):
        raise ValueError(f"expected (N,) predictions or (N, C) logits for N={len(true)} cameras, got {tuple(x.shape)}")
    if len(true) and (true.min() < 0 or true.max() >= num_cameras):
        raise ValueError(f"camera ids must lie in [0, {num_cameras})")
    if soft and x.dim() != 2:
        raise ValueError("soft=True needs (N, C) logits")
    if x.dim() == 1 and len(x) and (x.min() < 0 or x.max() >= num_cameras):
        raise ValueError(f"predicted cameras must lie in [0, {num_cameras})")
    probs = x.double().softmax(1) if soft else F.one_hot((x.argmax(1) if x.dim() == 2 else x).long(),
                                                         num_cameras).double()
    matrix = torch.zeros(num_cameras, num_cameras, dtype=torch.float64).index_add_(0, true, probs)
    return (matrix / matrix.sum(1, keepdim=True).clamp_min(1e-12)).numpy()


def plot_confusion(matrix, path, title=""):
    """Save a (C, C) confusion matrix as a PNG heat map (matplotlib, Agg backend). Returns ``path``."""
    from canu_plugin.plotting import pyplot
    plt = pyplot()
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square (C, C), got shape {matrix.shape}")
    num = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * num, 0.8 + 0.5 * num))
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(num):
        for j in range(num):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if matrix[i, j] > 0.5 else "white")
    ax.set_xticks(range(num), [str(c + 1) for c in range(num)])
    ax.set_yticks(range(num), [str(c + 1) for c in range(num)])
    ax.set_xlabel("predicted camera")
    ax.set_ylabel("true camera")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def balanced_sample(camids, per_camera, seed=0):
    """Sorted indices of up to ``per_camera`` samples of every camera (fixed by ``seed``).

    Args:
        camids: (N,) camera labels. Returns: (M,) int64 indices.
    """
    cams, num = _index_and_count(camids)
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(cams == c))[:per_camera] for c in range(num)]
    return np.sort(np.concatenate(picks))
