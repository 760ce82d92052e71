"""Samplers of ACAN's two batch parts (intra-camera labels only).

- :class:`PerCameraIdentitySampler` (triplet part): a global batch is ``groups_per_batch`` groups
  of P identities x K images, all P identities of a group from ONE camera (the per-camera
  batch-hard triplet needs positives and negatives inside a camera).
- :class:`CameraBalancedSampler` (adversarial part): the same number of images from every camera
  (ACAN: floor(64 / C) per camera).
- :class:`ACANSampler`: one stream for one forward pass: per batch, this rank's triplet part
  followed by its camera-balanced part, as ``(index, part)`` pairs (``part`` 0 = triplet,
  1 = camera-balanced) that :class:`canu_plugin.data.intra_camera.IntraCameraDataset` reads.

All are infinite, restartable (every ``iter()`` replays the stream from the seed) and DDP-aware in
fast-reid's way: every rank draws the same global batches from a shared seed
(``comm.shared_random_seed()`` when none is given) and keeps its contiguous slice.
"""
import itertools
from collections import defaultdict

import numpy as np
from torch.utils.data import Sampler
from fastreid.utils import comm

from canu_plugin.data.keys import CAMERA_PART, TRIPLET_PART


def _shared_seed(seed):
    return int(comm.shared_random_seed() if seed is None else seed)


def _pick(rng, pool, k):
    """``k`` entries of ``pool`` (a list), without replacement when it has at least ``k``."""
    return rng.choice(pool, size=k, replace=len(pool) < k).tolist()


class PerCameraIdentitySampler(Sampler):
    """Triplet part: groups of P identities x K images, each group from one camera.

    A pass shuffles the identities of every camera, cuts them into groups of P (the last,
    incomplete group of a camera is dropped, as in fast-reid's ``NaiveIdentitySampler``), and
    shuffles the groups of all cameras together; cameras thus get groups in proportion to their
    identities. An identity with fewer than K images is sampled with replacement.

    Args:
        data_source: list of N ``(path, label, camid)``; labels are per-camera identities.
        pids_per_group: P; num_instances: K.
        groups_per_batch: G groups per global batch (G x P x K images over all ranks).
        seed: shared seed; None = ``comm.shared_random_seed()``.
    Yields:
        int indices into ``data_source``, ``batch_size`` (= G*P*K / world size) per batch.
    """

    def __init__(self, data_source, pids_per_group, num_instances, groups_per_batch=1, seed=None):
        self.world, self.rank = comm.get_world_size(), comm.get_rank()
        self.P, self.K, self.G = int(pids_per_group), int(num_instances), int(groups_per_batch)
        if min(self.P, self.K, self.G) < 1:
            raise ValueError(f"P, K and groups per batch must be >= 1, got {self.P}, {self.K}, {self.G}")
        if (self.G * self.P) % self.world:
            raise ValueError(f"{self.G} group(s) x {self.P} identities cannot be split evenly over "
                             f"{self.world} ranks: make groups_per_batch x P a multiple of the world size")
        self.index_of = defaultdict(list)          # (camid, label) -> indices
        for i, (_, label, cam) in enumerate(data_source):
            self.index_of[(cam, label)].append(i)
        self.ids_of_cam = defaultdict(list)        # camid -> sorted identity keys
        for key in sorted(self.index_of):
            self.ids_of_cam[key[0]].append(key)
        if not any(len(ids) >= self.P for ids in self.ids_of_cam.values()):
            raise ValueError(f"no camera has {self.P} identities: lower the identities per group (P)")
        self.batch_size = self.G * self.P * self.K // self.world
        self.seed = _shared_seed(seed)

    def _groups(self, rng):
        """One pass: a shuffled list of groups, each a list of P identity keys of one camera."""
        groups = []
        for cam in sorted(self.ids_of_cam):
            ids = self.ids_of_cam[cam]
            order = rng.permutation(len(ids))
            groups += [[ids[j] for j in order[s:s + self.P]] for s in range(0, len(ids) - self.P + 1, self.P)]
        return [groups[j] for j in rng.permutation(len(groups))]

    def _global_batches(self):
        """Infinite stream of global batches, lists of G*P*K indices."""
        rng = np.random.default_rng([self.seed, TRIPLET_PART])
        while True:
            groups = self._groups(rng)
            for s in range(0, len(groups) - self.G + 1, self.G):
                yield [i for group in groups[s:s + self.G] for key in group
                       for i in _pick(rng, self.index_of[key], self.K)]

    def __iter__(self):
        lo = self.rank * self.batch_size
        for batch in self._global_batches():
            yield from batch[lo:lo + self.batch_size]


class CameraBalancedSampler(Sampler):
    """Adversarial part: the same number of images from every camera in every batch.

    Args:
        camids: (N,) camera index of each sample, in [0, C).
        images_per_camera: m images of each camera per global batch; each rank takes
            ``m // world_size`` of them (at least 1), so a rank's batch is C x (m // world_size).
        seed: shared seed; None = ``comm.shared_random_seed()``.
    Yields:
        int indices, camera by camera within a batch (order is irrelevant to the losses).
    """

    def __init__(self, camids, images_per_camera, seed=None):
        self.world, self.rank = comm.get_world_size(), comm.get_rank()
        camids = np.asarray(camids, dtype=np.int64)
        if camids.ndim != 1 or camids.size == 0:
            raise ValueError("camids must be a non-empty 1-D array")
        self.per_rank = int(images_per_camera) // self.world
        if self.per_rank < 1:
            raise ValueError(f"{images_per_camera} image(s) per camera cannot be split over {self.world} ranks: "
                             "raise the camera-balanced batch")
        self.pools = [np.flatnonzero(camids == c).tolist() for c in np.unique(camids)]
        self.batch_size = self.per_rank * len(self.pools)
        self.seed = _shared_seed(seed)

    def _global_batches(self):
        """Infinite stream of global batches: per camera, ``per_rank x world`` indices."""
        rng = np.random.default_rng([self.seed, CAMERA_PART])
        while True:
            yield [_pick(rng, pool, self.per_rank * self.world) for pool in self.pools]

    def __iter__(self):
        lo, hi = self.rank * self.per_rank, (self.rank + 1) * self.per_rank
        for per_camera in self._global_batches():
            for picks in per_camera:
                yield from picks[lo:hi]


class ACANSampler(Sampler):
    """Both parts in one stream: per batch, ``triplet.batch_size`` ``(index, 0)`` pairs then
    ``balanced.batch_size`` ``(index, 1)`` pairs (this rank's share of each).

    Wrap it in a ``BatchSampler`` of ``batch_size`` (fast-reid's ``build_reid_train_loader`` with
    ``total_batch_size = batch_size x world size`` does).
    """

    def __init__(self, triplet, balanced):
        self.triplet, self.balanced = triplet, balanced
        self.batch_size = triplet.batch_size + balanced.batch_size

    def __iter__(self):
        tri, bal = iter(self.triplet), iter(self.balanced)
        while True:
            yield from ((i, TRIPLET_PART) for i in itertools.islice(tri, self.triplet.batch_size))
            yield from ((i, CAMERA_PART) for i in itertools.islice(bal, self.balanced.batch_size))
