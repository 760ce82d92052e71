"""The length of a run, in one place: iterations per epoch (``PSEUDO.ITERS_PER_EPOCH`` for
pseudo-label training), and an ETA that also counts the epochs' feature extraction and clustering."""
from fastreid.utils.events import CommonMetricPrinter, get_event_storage

CLUSTERING_TIME_KEYS = ("pseudo/extract_s", "pseudo/cluster_s")  # put by the ClusteringHook every clustering


def iters_per_epoch(cfg, loader_length):
    """Training iterations per epoch.

    Args:
        cfg: config; loader_length: fast-reid's default, ``len(train set) // SOLVER.IMS_PER_BATCH``.
    Returns:
        ``PSEUDO.ITERS_PER_EPOCH`` when pseudo-label training sets it (> 0), else ``loader_length``.
    """
    if cfg.PSEUDO.ENABLED and cfg.PSEUDO.ITERS_PER_EPOCH > 0:
        return int(cfg.PSEUDO.ITERS_PER_EPOCH)
    return int(loader_length)


class EpochAwareMetricPrinter(CommonMetricPrinter):
    """fast-reid's printer whose ETA adds the clustering still to come: the mean seconds of the
    clusterings so far (extraction + clustering) times the clustering epochs left.

    Args:
        max_iter: the run's real number of iterations; max_epoch, period: ``SOLVER.MAX_EPOCH`` and
            ``CLUSTERING.PERIOD`` (0 for a run without clustering).
    """

    def __init__(self, max_iter, max_epoch=0, period=0):
        super().__init__(max_iter)
        self.max_iter, self.max_epoch, self.period = max_iter, max_epoch, period

    def clustering_seconds_left(self, storage):
        """Estimated seconds of the clusterings after the current epoch (0 without clustering)."""
        if self.period <= 0 or not all(k in storage.histories() for k in CLUSTERING_TIME_KEYS):
            return 0.0
        per_clustering = sum(storage.history(k).global_avg() for k in CLUSTERING_TIME_KEYS)
        left = sum(1 for e in range(storage.epoch + 1, self.max_epoch) if e % self.period == 0)
        return per_clustering * left

    def write(self):
        """fast-reid's line, its ETA counting the clustering left as iterations of the median length."""
        storage = get_event_storage()
        extra = self.clustering_seconds_left(storage)
        if extra > 0 and "time" in storage.histories():
            self._max_iter = self.max_iter + extra / max(storage.history("time").median(1000), 1e-9)
        try:
            super().write()
        finally:
            self._max_iter = self.max_iter


__all__ = ["iters_per_epoch", "EpochAwareMetricPrinter", "CLUSTERING_TIME_KEYS"]
