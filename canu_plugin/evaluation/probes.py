"""How much camera information features carry (CANU-ReID's argument, Fig. 7): a linear camera
probe on frozen features and a PCA picture of two cameras."""
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split


def camera_probe_accuracy(features, camids, test_fraction=0.3, seed=0, max_samples=0):
    """Held-out accuracy of a linear classifier predicting the camera from frozen features.

    Args:
        features: (N, D) array; camids: (N,) camera ids.
        test_fraction: share of the images held out (stratified by camera).
        max_samples: > 0: use a random (seeded) subset of at most this many images.
    Returns:
        (accuracy, chance): accuracy on the held-out images and the majority-class rate.
    Raises:
        ValueError: fewer than two cameras, or too few images per camera to hold some out.
    """
    x = np.asarray(features, np.float32)
    y = np.asarray(camids).astype(np.int64)
    if 0 < max_samples < len(y):
        pick = np.sort(np.random.default_rng(seed).permutation(len(y))[:max_samples])
        x, y = x[pick], y[pick]
    cams, counts = np.unique(y, return_counts=True)
    if len(cams) < 2:
        raise ValueError("a camera probe needs at least two cameras")
    if counts.min() < 2:
        raise ValueError(f"camera {cams[counts.argmin()]} has {counts.min()} image(s): too few to hold one out")
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    clf = LogisticRegression(max_iter=2000).fit(xtr, ytr)
    return float((clf.predict(xte) == yte).mean()), float(counts.max() / counts.sum())


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
