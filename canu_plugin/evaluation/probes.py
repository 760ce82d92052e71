"""How much camera information features carry (CANU-ReID's argument, Fig. 7): a linear camera
probe on frozen features and a PCA picture of two cameras."""
import logging
import os
from collections import OrderedDict

import numpy as np
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from canu_plugin.evaluation.camera_alignment import d_inter_camera

logger = logging.getLogger(__name__)


def _split(y, groups, test_fraction, seed, name=str):
    """Train / test indices stratified by camera; with ``groups``, no group (identity) on both sides.
    ``name``: camera index -> its name in messages."""
    if groups is None:
        return train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=y)
    n_splits = max(int(round(1 / test_fraction)), 2)
    if len(np.unique(groups)) < n_splits:
        raise ValueError(f"{len(np.unique(groups))} identities cannot be held out in {n_splits} folds while "
                         "keeping every camera on the training side")
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train, test = next(folds.split(np.zeros(len(y)), y, groups))
    missing = set(np.unique(y)) - set(np.unique(y[train]))
    if missing or len(test) == 0:
        raise ValueError(f"cannot hold out identities with every camera on the training side (camera(s) "
                         f"{', '.join(name(c) for c in sorted(missing))} only seen with held-out identities)")
    return train, test


def camera_probe_accuracy(features, camids, groups=None, test_fraction=0.3, seed=0, max_samples=0, names=None):
    """Held-out accuracy of a linear classifier predicting the camera from frozen features.

    Args:
        features: (N, D) array; camids: (N,) camera ids.
        groups: (N,) identity of each image: held-out images are of identities the probe never saw
            (otherwise an identity seen in training would let it recognise the person's usual cameras);
            None splits images at random.
        test_fraction: share of the images held out (stratified by camera).
        max_samples: > 0: use a random (seeded) subset of at most this many images.
        names: camera index -> its name (as the release names it) for the error messages; None: the index.
    Returns:
        (accuracy, chance): accuracy on the held-out images and the majority-class rate.
    Raises:
        ValueError: fewer than two cameras, too few images per camera, or no identity split that
            keeps every camera on the training side.
    """
    x = np.asarray(features, np.float32)
    y = np.asarray(camids).astype(np.int64)
    g = None if groups is None else np.asarray(groups)
    if 0 < max_samples < len(y):
        pick = np.sort(np.random.default_rng(seed).permutation(len(y))[:max_samples])
        x, y, g = x[pick], y[pick], None if g is None else g[pick]
    cams, counts = np.unique(y, return_counts=True)
    if len(cams) < 2:
        raise ValueError("a camera probe needs at least two cameras")
    name = str if names is None else (lambda c: str(names[int(c)]))  # noqa: E731
    if counts.min() < 2:
        raise ValueError(f"camera {name(cams[counts.argmin()])} has {counts.min()} image(s): too few to hold one out")
    train, test = _split(y, g, test_fraction, seed, name)
    clf = LogisticRegression(max_iter=2000).fit(x[train], y[train])
    return float((clf.predict(x[test]) == y[test]).mean()), float(counts.max() / counts.sum())


def pca_camera_pair(features, camids, pids, cam_a, cam_b, path, title="", label_offset=0):
    """PNG of the 2-D PCA of the features of two cameras, coloured by camera (Fig. 7 of CANU-ReID).

    Args:
        features: (N, D); camids, pids: (N,). Only images of ``cam_a`` and ``cam_b`` are drawn,
        and only identities seen by both cameras, so that separated colours mean a camera gap.
        path: where the PNG goes. label_offset: added to the camera ids in the legend (1 for
        0-based ids shown as Market's c1, c2...).
    Returns:
        the number of points drawn.
    """
    from canu_plugin.plotting import pyplot
    plt = pyplot()
    x, c, p = np.asarray(features, np.float32), np.asarray(camids), np.asarray(pids)
    shared = np.intersect1d(p[c == cam_a], p[c == cam_b])
    keep = np.isin(c, [cam_a, cam_b]) & np.isin(p, shared)
    if keep.sum() < 3:
        raise ValueError(f"cameras {cam_a} and {cam_b} share too few identities to plot")
    xy = PCA(n_components=2, random_state=0).fit_transform(x[keep])
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for cam, colour in ((cam_a, "tab:blue"), (cam_b, "tab:orange")):
        m = c[keep] == cam
        ax.scatter(xy[m, 0], xy[m, 1], s=10, c=colour, alpha=0.7, label=f"camera {cam + label_offset}")
    ax.set_title(title or f"PCA of features, cameras {cam_a} and {cam_b}")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return int(keep.sum())


def camera_diagnostics(feats, pids, camids, pooled=None, max_images=4000, pca_cameras=(), folder=None):
    """How much camera the test features carry, on query + gallery (distractors, pid < 0, left out).

    - ``cam_probe``: held-out accuracy (%) of a linear camera probe, held out by identity
      (``cam_probe_chance``: the majority rate);
    - ``d_inter``: d_inter-camera (ACAN Table VII) of the unit test features;
    - ``d_inter_pooled``: the same on the backbones' pooled features (same kind for every model,
      :mod:`canu_plugin.evaluation.pooled`), when ``pooled`` is given;
    - with two ``pca_cameras`` and a ``folder``: ``pca_cam<a>_cam<b>.png`` there (CANU-ReID Fig. 7).

    Args:
        feats: (N, D) tensor; pids, camids: (N,) tensors; pooled: (N, C) tensor or None;
        max_images: probe subset size (0 = all).
    Returns:
        OrderedDict of floats.
    """
    keep = (pids >= 0).numpy()
    x = F.normalize(feats[keep].float(), dim=1).numpy()
    cams, ids = camids[keep].numpy(), pids[keep].numpy()
    out = OrderedDict()
    try:
        acc, chance = camera_probe_accuracy(x, cams, ids, max_samples=max_images)
        out["cam_probe"], out["cam_probe_chance"] = acc * 100, chance * 100
    except ValueError as e:  # one camera, or too few images per camera
        logger.warning(f"camera probe skipped: {e}")
    out["d_inter"] = d_inter_camera(x, cams, normalize=False)
    if pooled is not None:
        out["d_inter_pooled"] = d_inter_camera(pooled[keep], cams, normalize=True)
    pair = list(pca_cameras)
    if len(pair) == 2 and folder and set(pair) <= set(cams.tolist()):
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"pca_cam{pair[0] + 1}_cam{pair[1] + 1}.png")
        try:
            pca_camera_pair(x, cams, ids, pair[0], pair[1], path, label_offset=1,
                            title=f"test features, cameras {pair[0] + 1} and {pair[1] + 1}, shared ids")
        except ValueError as e:
            logger.warning(f"PCA plot skipped: {e}")
    return out
