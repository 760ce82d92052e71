"""``LabelGenerator``: (model, target set, cfg) -> one :class:`~canu_plugin.data.pseudo_labels.PseudoLabels`.

Every rank extracts its shard of the target features (``model.cluster_forward``, eval mode);
rank 0 splits them into the model's views (``model.cluster_views``), clusters each view on its own
(:func:`canu_plugin.clustering.cluster`) and broadcasts the result. Stateless between calls: what a
run keeps (the labels in use, the first eps) belongs to the :class:`~canu_plugin.engine.hooks.ClusteringHook`.
"""
import logging
import time

import numpy as np
import torch
from fastreid.utils import comm

from canu_plugin.data.datasets import train_items
from canu_plugin.data.pseudo_labels import PseudoLabels
from canu_plugin.distributed import broadcast_object, unwrap
from canu_plugin.engine.features import extract_features

logger = logging.getLogger(__name__)


class LabelGenerator:
    """Clusters the target set with the current model.

    Args:
        cfg: config (``CLUSTERING.*``, ``PSEUDO.*``, test-time input keys).
        target: :class:`~canu_plugin.data.pseudo_labels.TargetSet`.
        root: dataset root (for ``PSEUDO.SOURCE_DATASETS`` when ``CLUSTERING.SOURCE_LAMBDA`` > 0).
        source: None, or the labelled :class:`~canu_plugin.data.pseudo_labels.SourceSet` trained beside
            the clusters (``PSEUDO.TRAIN_SOURCE``): each clustering also gives its identities' centroids.
    """

    def __init__(self, cfg, target, root=None, source=None):
        self.cfg, self.target, self.source = cfg, target, source
        self.source_items = None
        if source is not None:  # the same images as PSEUDO.SOURCE_DATASETS' train items
            self.source_items = source.items()
        elif cfg.CLUSTERING.SOURCE_LAMBDA > 0:
            self.source_items = train_items(cfg.PSEUDO.SOURCE_DATASETS, root, show=False)

    def __call__(self, model, epoch, kept_eps=None):
        """Cluster the target set.

        Args:
            model: the (possibly DDP-wrapped) :class:`~canu_plugin.modeling.contract.PseudoLabelModel`.
            epoch: the epoch the labels are for.
            kept_eps: per-view eps of the run's first clustering (``EPS_RULE quantile_once``), or None.
        Returns:
            :class:`PseudoLabels` (identical on every rank; with a ``source``, its (S, D)
            ``source_centroids`` too); ``info`` holds extract_s, cluster_s, the clustering stages'
            timings and, with ``PSEUDO.CAMERA_PROBE``, the camera probe accuracy.
        """
        module = unwrap(model)
        t0 = time.perf_counter()
        extract = dict(normalize=False, forward=module.cluster_forward, flip=self.cfg.PSEUDO.FLIP)
        feats = extract_features(model, self.target.items(), self.cfg, **extract)
        source = None
        if self.source_items is not None:
            source = extract_features(model, self.source_items, self.cfg, **extract)
        t1 = time.perf_counter()
        views = module.cluster_views(feats) if comm.is_main_process() else None
        clustered = self._camera_normalized(views)
        knn = self._sharded_knn(clustered)
        result = (self._debiased(self._cluster(module, clustered, source, kept_eps, knn, views), views)
                  if comm.is_main_process() else None)
        labels, view_labels, centroids, eps, info = broadcast_object(result)
        source_centroids = None
        if self.source is not None:
            source_centroids = broadcast_object(self._source_centroids(module, source)
                                                if comm.is_main_process() else None)
        info.update(extract_s=round(t1 - t0, 3), cluster_s=round(time.perf_counter() - t1, 3))
        return PseudoLabels(labels=labels, centroids=centroids, epoch=epoch, view_labels=view_labels,
                            eps=eps, source_centroids=source_centroids, info=info)

    def _source_centroids(self, module, source):
        """Rank 0: (S, D) float32 mean view-0 feature of each source identity, like the clusters' centroids."""
        from canu_plugin.clustering import cluster_centroids
        view = np.asarray(module.cluster_views(source)[0], np.float32)
        return torch.as_tensor(cluster_centroids(view, self.source.labels, self.cfg.CLUSTERING.NORM_CENTROIDS))

    def _camera_normalized(self, views):
        """The views DBSCAN clusters: with ``CLUSTERING.CAMERA_NORM``, each (N, D_v) view normalised per target
        camera (:func:`~canu_plugin.clustering.camera_norm.camera_normalize`), else ``views`` (None off rank 0)."""
        if views is None or not self.cfg.CLUSTERING.CAMERA_NORM:
            return views
        from canu_plugin.clustering.camera_norm import camera_normalize
        return [camera_normalize(v, self.target.camids) for v in views]

    def _debiased(self, result, views):
        """Rank 0: ``_cluster``'s result after ``CLUSTERING.DISCARD_SINGLE_CAMERA`` (every view's single-camera
        clusters made outliers) with, under either camera option, the centroids recomputed from the model's
        own (N, D) view-0 features ``views[0]``: what CANU's discriminator and the classifiers see is the
        model's feature space, whatever the clustering saw."""
        c = self.cfg.CLUSTERING
        if not (c.CAMERA_NORM or c.DISCARD_SINGLE_CAMERA):
            return result
        from canu_plugin.clustering import cluster_centroids
        from canu_plugin.clustering.camera_norm import discard_single_camera
        from canu_plugin.clustering.inputs import as_unit_features
        labels, extra, _, eps, info = result
        if c.DISCARD_SINGLE_CAMERA:
            labels, info["clustering_discarded"] = discard_single_camera(labels, self.target.camids)
            if extra is not None:
                extra = np.stack([discard_single_camera(extra[:, v], self.target.camids)[0]
                                  for v in range(extra.shape[1])], 1)
        centroids = cluster_centroids(as_unit_features(views[0]), labels, c.NORM_CENTROIDS)
        return labels, extra, torch.as_tensor(centroids, dtype=torch.float32), eps, info

    def _sharded_knn(self, views):
        """Per view, the k-NN lists searched by every rank (on rank 0; None elsewhere), or None when
        ``CLUSTERING.KNN_SHARDED`` does not apply (rank 0 then searches alone). Called on every rank."""
        from canu_plugin.clustering.distributed import sharded_knn_enabled, sharded_knn_views
        if not sharded_knn_enabled(self.cfg.CLUSTERING.KNN_SHARDED):
            return None
        return sharded_knn_views(views, self.cfg)

    def _cluster(self, module, views, source, kept_eps, knn=None, model_views=None):
        """Rank 0: cluster every view (the model's ``cluster_views`` of the target features, camera-normalised
        under ``CLUSTERING.CAMERA_NORM``); the camera probe sees ``model_views[0]`` (the model's own; default
        ``views[0]``).

        Returns:
            labels (N,), view labels (N, V-1) or None, centroids (K, D) of view 0, eps per view, info.
        """
        from canu_plugin.clustering import cluster
        use_source = source is not None and self.cfg.CLUSTERING.SOURCE_LAMBDA > 0  # (SSG's distance term)
        source_views = self._source_views(module, source) if use_source else [None] * len(views)
        kept = list(kept_eps) if kept_eps else [None] * len(views)
        out, eps, info = [], [], {}
        for v, (view, src) in enumerate(zip(views, source_views)):
            labels, centroids, view_info = cluster(view, self.cfg, return_info=True, kept_eps=kept[v],
                                                   source_features=src, knn=knn[v] if knn else None)
            out.append((np.asarray(labels, dtype=np.int64), centroids))
            if "eps" in view_info:
                eps.append(float(view_info["eps"]))
            if v == 0:
                info = {f"clustering_{k}": round(float(x), 4) for k, x in view_info.items()
                        if k.endswith("_s") or k == "eps"}
        if self.cfg.PSEUDO.CAMERA_PROBE:
            info["cam_probe"] = self._camera_probe((model_views or views)[0], out[0][0])
        extra = [lab for lab, _ in out[1:]]
        return (out[0][0], np.stack(extra, 1) if extra else None, torch.as_tensor(out[0][1], dtype=torch.float32),
                tuple(eps), info)

    def _source_views(self, module, source):
        """Rank 0: the source features' views for SSG's distance term, each normalised per source camera
        under ``CLUSTERING.CAMERA_NORM`` (as the target's, so that the two distances are comparable)."""
        views = module.cluster_views(source)
        if not self.cfg.CLUSTERING.CAMERA_NORM:
            return views
        from canu_plugin.clustering.camera_norm import camera_normalize
        from canu_plugin.data.labels import index_labels
        cams = index_labels(item[2] for item in self.source_items)[0]
        return [camera_normalize(v, cams) for v in views]

    def _camera_probe(self, features, labels):
        """Held-out accuracy (0-1) of a linear camera probe on the (N, D) target features, or None.

        Held-out images are of identities the probe did not see: the ground truth with
        ``PSEUDO.GT_DIAGNOSTICS`` (diagnostics only), else the (N,) pseudo-labels (outliers alone).
        """
        from canu_plugin.evaluation.probes import camera_probe_accuracy
        groups = self.target.gt if self.cfg.PSEUDO.GT_DIAGNOSTICS else np.where(
            labels >= 0, labels, labels.max() + 1 + np.arange(len(labels)))
        try:
            return round(camera_probe_accuracy(np.asarray(features), self.target.camids, groups,
                                               max_samples=self.cfg.TEST.CANU.PROBE_MAX_IMAGES,
                                               names=self.target.camera_names)[0], 4)
        except ValueError as e:
            logger.warning(f"camera probe skipped: {e}")
            return None


__all__ = ["LabelGenerator"]
