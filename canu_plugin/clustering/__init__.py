"""Clustering engine for pseudo-labels: exact k-NN (faiss GPU/CPU or torch; optionally sharded
over the DDP ranks, :mod:`.distributed`), sparse exact k-reciprocal Jaccard distance, DBSCAN (or
k-means) and centroids.

Training calls :func:`cluster`; the stage functions take explicit parameters. Modules that import
torch (``knn_torch``, ``knn_exact``, ``distributed``; ``knn_calibrate`` inside its functions) are
imported on use only.
"""
from canu_plugin.clustering.cluster import (EPS_RULES, METHODS, cluster, cluster_centroids, cluster_features,
                                            dbscan_precomputed, kmeans_labels, quantile_eps)
from canu_plugin.clustering.jaccard import jaccard_distance, jaccard_from_knn
from canu_plugin.clustering.knn import BACKENDS, PRECISION_CHOICES, PRECISIONS, knn_search, resolve_backend, resolve_knn

__all__ = ["cluster", "cluster_features", "cluster_centroids", "dbscan_precomputed", "kmeans_labels",
           "quantile_eps", "jaccard_distance", "jaccard_from_knn", "knn_search", "resolve_backend",
           "resolve_knn", "BACKENDS", "PRECISIONS", "PRECISION_CHOICES", "METHODS", "EPS_RULES"]
