"""``add_canu_config(cfg)``: every config key canu-plugin adds to fast-reid's, with its default.

Keys are read only here and in ``from_config`` methods. Call it once, right after
``fastreid.config.get_cfg()`` and before ``merge_from_file``.
"""
from fastreid.config import CfgNode as CN


def _add_clustering_config(cfg):
    _C = cfg
    _C.CLUSTERING = CN()
    _C.CLUSTERING.METHOD = "dbscan"        # "dbscan" (CANU, SpCL, Cluster-Contrast) or "kmeans" (MMT's original)
    _C.CLUSTERING.KNN_BACKEND = "auto"     # "auto" (faiss-gpu if CUDA and faiss has GPUs, else faiss-cpu), "faiss-gpu", "faiss-cpu"
    _C.CLUSTERING.KNN_CHUNK = 8192         # queries per faiss search call: bounds k-NN memory
    _C.CLUSTERING.K1 = 30                  # k-reciprocal neighbourhood size (Zhong et al. re-ranking)
    _C.CLUSTERING.K2 = 6                   # query-expansion neighbourhood size
    _C.CLUSTERING.EPS = 0.6                # DBSCAN radius on the Jaccard distance (used when EPS_RULE == "fixed")
    _C.CLUSTERING.EPS_RULE = "fixed"       # "fixed" or "quantile" (MMT/SSG: eps = mean of the rho-quantile smallest distances)
    _C.CLUSTERING.RHO = 1.6e-3             # quantile for EPS_RULE == "quantile" (SSG/MMT value)
    _C.CLUSTERING.MIN_SAMPLES = 4          # DBSCAN min_samples
    _C.CLUSTERING.NUM_CLUSTERS = 500       # k for k-means
    _C.CLUSTERING.PERIOD = 1               # re-cluster every PERIOD epochs


def _add_eval_config(cfg):
    _C = cfg
    _C.TEST.CANU = CN()
    _C.TEST.CANU.ENABLED = True            # use canu-plugin's chunked exact evaluator (same numbers as fast-reid's)
    _C.TEST.CANU.QUERY_CHUNK = 1024        # queries scored at once: bounds evaluation memory


def add_canu_config(cfg):
    """Add canu-plugin's keys (with defaults) to a fast-reid config, in place.

    Args:
        cfg (fastreid.config.CfgNode): from ``fastreid.config.get_cfg()``.
    Returns:
        the same cfg, for chaining.
    """
    _add_clustering_config(cfg)
    _add_eval_config(cfg)
    return cfg
