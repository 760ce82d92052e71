"""Checks and conversions shared by the clustering stages (and the dense reference)."""
import numpy as np

from canu_plugin.errors import CanuError

UNIT_NORM_TOL = 1e-4  # rows whose L2 norm is further than this from 1 are re-normalised


def _to_numpy(features):
    """A numpy view/copy of a numpy array or a torch tensor (any device), without importing torch."""
    if type(features).__module__.split(".")[0] == "torch":
        t = features.detach()
        if t.dtype.is_floating_point:
            t = t.float()  # float16 / bfloat16 (which numpy lacks) / float64 -> float32
        return t.cpu().numpy()
    return np.asarray(features)


def as_unit_features(features, name="features"):
    """Validate clustering input and return it as L2-normalised float32.

    Args:
        features: (N, D) numpy array or torch tensor (CPU or CUDA), any real dtype
            (float16/float64/integers are converted to float32).
        name: what to call the input in error messages.
    Returns:
        (N, D) float32 C-contiguous array with unit rows. Already-unit rows (within
        ``UNIT_NORM_TOL``) are returned as they are, without a copy when the input was
        float32 C-contiguous; otherwise every row is divided by its norm.
    Raises:
        CanuError: not 2-D, empty, not real, NaN/inf values, or an all-zero row.
    """
    x = _to_numpy(features)
    if x.ndim != 2:
        raise CanuError(f"{name} must be a 2-D (N, D) array, got shape {tuple(x.shape)}: pass one "
                        "feature vector per row (e.g. features.reshape(len(features), -1))")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise CanuError(f"{name} is empty (shape {tuple(x.shape)}): extract features of at least one "
                        "image before clustering (is the target training set empty?)")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise CanuError(f"{name} has dtype {x.dtype}: pass real-valued features (float32)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise CanuError(f"{name} contain NaN or inf in {len(bad)} of {len(x)} rows (first: row {bad[0]}): "
                        "the model diverged or the features are corrupt; lower the learning rate or "
                        "restart from a good checkpoint (MODEL.WEIGHTS)")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    if (norms == 0).any():
        raise CanuError(f"{name} row {int(np.flatnonzero(norms == 0)[0])} is all zeros: a zero feature "
                        "has no direction to cluster on; check the model's output (dead ReLU / wrong weights)")
    if np.abs(norms - 1.0).max() > UNIT_NORM_TOL:
        x = (x / norms[:, None]).astype(np.float32)
    return x


def check_k(n, k1, k2):
    """Validate the re-ranking neighbourhood sizes for ``n`` samples (raises CanuError)."""
    if int(k1) != k1 or int(k2) != k2 or k1 < 1 or k2 < 1:
        raise CanuError(f"k1={k1} and k2={k2} must be positive integers (defaults: CLUSTERING.K1=30, K2=6)")
    if k2 > k1:
        raise CanuError(f"k2={k2} > k1={k1}: the query expansion uses the k2 nearest of the k1 neighbours; "
                        "set CLUSTERING.K2 <= CLUSTERING.K1")
    if n < k1:
        raise CanuError(f"only {n} samples to cluster but k1={k1} neighbours are needed per sample: lower "
                        f"CLUSTERING.K1 to at most {n} (and K2 <= K1) or cluster a larger set")


def check_eps(eps):
    """eps must lie in (0, 1): pairs absent from the sparse Jaccard matrix are at distance exactly 1."""
    if not (0.0 < float(eps) < 1.0):
        raise CanuError(f"DBSCAN eps={eps} must be in (0, 1): the Jaccard distance is 1 for every pair "
                        "outside the k-reciprocal neighbourhoods, so eps >= 1 would join everything; "
                        "use CLUSTERING.EPS around 0.6 or CLUSTERING.EPS_RULE='quantile'")
