"""Synthetic re-ID-like embeddings for the clustering tests and ``tools/benchmark_cluster.py``.

Identities are Gaussian clusters on the unit sphere with the structure that makes re-ID
clustering hard: uneven identity sizes (gamma-distributed around a mean such as Market-1501's
17.2 or MSMT17's 31.3 images per id), identity centres that share a low-rank component (so
different people are not orthogonal), a per-camera shift (each identity seen by a few cameras
only), and isotropic noise.
"""
import numpy as np

MARKET_IMGS_PER_ID = 12936 / 751
MSMT_IMGS_PER_ID = 32621 / 1041


def _id_sizes(rng, n, imgs_per_id):
    """(n_ids,) int sizes >= 1 summing to n, gamma-distributed around imgs_per_id."""
    n_ids = max(1, int(round(n / imgs_per_id)))
    raw = 1.0 + rng.gamma(2.0, max(imgs_per_id - 1.0, 1e-3) / 2.0, n_ids)
    sizes = np.maximum(1, np.round(raw * n / raw.sum())).astype(np.int64)
    while sizes.sum() != n:  # fix rounding, one id at a time
        i = rng.integers(n_ids)
        if sizes.sum() > n and sizes[i] > 1:
            sizes[i] -= 1
        elif sizes.sum() < n:
            sizes[i] += 1
    return sizes


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def clustered_features(n, dim=2048, imgs_per_id=MARKET_IMGS_PER_ID, num_cams=6, noise=0.5, hard_noise=1.2,
                       noise_spread=0.4, cam_shift=0.35, shared=0.8, rank=32, seed=0, chunk=8192):
    """Generate re-ID-like unit features.

    Args:
        n: samples; dim: feature dimension; imgs_per_id: mean identity size.
        num_cams: cameras (each identity appears in 2..min(4, num_cams) of them).
        noise: norm of the isotropic per-image noise relative to the unit identity centre;
            hard_noise: norm of per-image noise inside a ``rank``-dimensional subspace (it is what
            confuses neighbours: isotropic noise in high dimension barely changes the ranking).
        cam_shift: norm of the per-camera offset; shared: weight of the low-rank shared component
            of the identity centres (of rank ``rank``).
        seed: RNG seed (deterministic output); chunk: rows generated at once (bounds memory).
    Returns:
        (x, ids, cams): (n, dim) float32 unit rows, (n,) int64 identity, (n,) int64 camera;
        samples are shuffled (identities are not contiguous).
    """
    rng = np.random.default_rng(seed)
    sizes = _id_sizes(rng, n, imgs_per_id)
    n_ids = len(sizes)
    basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(rank)
    own = rng.standard_normal((n_ids, dim)).astype(np.float32)
    centres = _unit(_unit(own) + shared * _unit(rng.standard_normal((n_ids, rank)).astype(np.float32) @ basis))
    cam_vecs = _unit(rng.standard_normal((num_cams, dim)).astype(np.float32))
    ids = rng.permutation(np.repeat(np.arange(n_ids), sizes))
    per_id = min(4, num_cams)
    id_cams = np.stack([rng.choice(num_cams, per_id, replace=False) for _ in range(n_ids)])
    n_seen = rng.integers(min(2, per_id), per_id + 1, n_ids)
    cams = id_cams[ids, (rng.random(n) * n_seen[ids]).astype(np.int64)]
    id_scale = rng.uniform(1.0 - noise_spread, 1.0 + noise_spread, n_ids).astype(np.float32)
    noise_basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(dim)
    x = np.empty((n, dim), np.float32)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        eps = rng.standard_normal((b - a, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
        eps += rng.standard_normal((b - a, rank), dtype=np.float32) @ noise_basis * np.float32(
            hard_noise / np.sqrt(rank))
        eps *= id_scale[ids[a:b], None]
        x[a:b] = _unit(centres[ids[a:b]] + np.float32(cam_shift) * cam_vecs[cams[a:b]] + eps)
    return x, ids.astype(np.int64), cams.astype(np.int64)


__all__ = ["clustered_features", "MARKET_IMGS_PER_ID", "MSMT_IMGS_PER_ID"]
