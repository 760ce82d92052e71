"""``add_canu_config(cfg)``: every config key canu-plugin adds to fast-reid's, with its default.

Every key is defined here, with its default and a comment; code reads them where they are used
(``from_config`` methods, the engine's builders and hooks, the tools). Call it once, right after
``fastreid.config.get_cfg()`` and before ``merge_from_file``.
"""
from fastreid.config import CfgNode as CN


def _add_clustering_config(cfg):
    _C = cfg
    _C.CLUSTERING = CN()
    _C.CLUSTERING.METHOD = "dbscan"        # "dbscan" (Jaccard + DBSCAN: CANU, SpCL) or "kmeans" (MMT's original)
    _C.CLUSTERING.KNN_BACKEND = "auto"     # "auto" (the exact backend measured fastest here, logged), "faiss-gpu",
    #                                        "torch" (exact, torch's device), "faiss-cpu", "faiss-ivf" (approximate, CPU)
    _C.CLUSTERING.KNN_CHUNK = 8192         # queries per search call / torch block: bounds the k-NN's extra memory
    _C.CLUSTERING.KNN_PRECISION = "auto"   # torch backend's first pass: "auto" (measured), "fp32", "fp16" or "bf16" (re-scored: same neighbours)
    _C.CLUSTERING.KNN_IVF_NLIST = 0        # faiss-ivf: inverted lists; 0 = 4 sqrt(N)
    _C.CLUSTERING.KNN_IVF_NPROBE = 32      # faiss-ivf: lists searched per query (higher: better recall, slower)
    _C.CLUSTERING.KNN_SHARDED = "auto"     # DDP: each rank searches its share of the queries; "auto" (NCCL, world > 1),
    #                                        "on" (any process group, gloo too) or "off" (rank 0 searches alone)
    _C.CLUSTERING.K1 = 30                  # k-reciprocal neighbourhood size (re-ranking); at most the sample count
    _C.CLUSTERING.K2 = 6                   # query-expansion neighbourhood size (<= K1; 1 = no expansion)
    _C.CLUSTERING.EPS = 0.6                # DBSCAN radius on the Jaccard distance, in (0, 1) (EPS_RULE "fixed")
    _C.CLUSTERING.EPS_RULE = "fixed"       # "fixed" (EPS); "quantile": mean of the smallest RHO-fraction of the Jaccard
                                           # distances, every clustering; "quantile_once": that eps from the first
                                           # clustering, then kept for the run (MMT's / SSG's code; checkpointed)
    _C.CLUSTERING.RHO = 1.6e-3             # fraction for the quantile rules (MMT's and SSG's code, every target incl. MSMT17)
    _C.CLUSTERING.DIST_NORM = "none"       # Jaccard weights exp(-d): "none" (SpCL/OpenUnReID) or "row_max": d divided by
                                           # the row's largest distance (MMT's and SSG's re-ranking code)
    _C.CLUSTERING.SOURCE_LAMBDA = 0.0      # SSG: distance = (1 - l) Jaccard + l (v_i + v_j), v = distance to the nearest
                                           # source sample (PSEUDO.SOURCE_DATASETS); SSG's code: 0.1; 0 = off
    _C.CLUSTERING.MIN_SAMPLES = 4          # DBSCAN min_samples (the point itself counts)
    _C.CLUSTERING.NUM_CLUSTERS = 500       # k for k-means
    _C.CLUSTERING.KMEANS_ITERS = 100       # faiss k-means iterations (MMT: sklearn KMeans, max_iter=300)
    _C.CLUSTERING.SEED = 0                 # k-means initialisation seed
    _C.CLUSTERING.NORM_CENTROIDS = False   # unit-normalise the centroids (False: plain means of the unit features)
    _C.CLUSTERING.MAX_PAIRS = 2097152      # Jaccard stage: pairs materialised at once per worker (~25 B each)
    _C.CLUSTERING.WORKERS = 0              # threads of the Jaccard stage; 0 = min(4, CPU cores)
    _C.CLUSTERING.PERIOD = 1               # re-cluster every PERIOD epochs
    _C.CLUSTERING.CAMERA_NORM = False      # cluster (f - m_cam) / s_cam: each camera's per-dim mean / std over the clustered
                                           # set (Song et al., ICLR 2025); centroids stay the model's own features
    _C.CLUSTERING.DISCARD_SINGLE_CAMERA = False  # clusters whose images all come from one camera become outliers


def _add_pseudo_config(cfg):
    _C = cfg
    _C.PSEUDO = CN()
    _C.PSEUDO.ENABLED = False              # train on cluster pseudo-labels of DATASETS.NAMES (their labels are never used)
    _C.PSEUDO.ITERS_PER_EPOCH = 0          # iterations per epoch; 0 = len(target train set) // SOLVER.IMS_PER_BATCH (MMT: 400)
    _C.PSEUDO.SEED = 0                     # epoch e re-seeds the RNGs and the sampler with SEED + e (a resumed run repeats the
                                           # uninterrupted one); -1 = fast-reid's random seeding
    _C.PSEUDO.RESET_OPTIMIZER = True       # each new clustering restarts the optimizer's state (Adam's moments and step) of
                                           # all parameters (MMT's code and its clustering baseline build a new Adam after
                                           # each clustering); False = only the re-sized classifiers' state (SSG's code
                                           # keeps one optimizer). EMA teachers and the discriminators keep theirs
    _C.PSEUDO.ON_FAILURE = "keep"          # fewer than P clusters: "keep" the last epoch's labels and warn, or "error"
    _C.PSEUDO.GT_DIAGNOSTICS = True        # log NMI/ARI/purity/lost ids against the dataset's labels (diagnostics only)
    _C.PSEUDO.CAMERA_PROBE = True          # per epoch: held-out camera-probe accuracy on the clustered target features
    _C.PSEUDO.FLIP = False                 # cluster the mean of the features of each image and its horizontal flip
                                           # (SSG's code sums them); False: the image alone (MMT's code)
    _C.PSEUDO.SOURCE_DATASETS = ()         # labelled source dataset(s) whose training features enter the clustering
                                           # distance (CLUSTERING.SOURCE_LAMBDA > 0, SSG); extracted every clustering
    _C.PSEUDO.TRAIN_SOURCE = False         # also train on the labelled PSEUDO.SOURCE_DATASETS beside the clusters:
                                           # each source identity one more class after the K clusters, its row the
                                           # mean of its features; an epoch counts both sets (OpenUnReID's strong
                                           # baseline, which adds domain-specific BN: here BN is shared). The
                                           # pseudo-label baseline only, without MODEL.CANU / ACAN
    _C.PSEUDO.DROP_VIEW_OUTLIERS = True    # models with several clustering views (SSG): a sample that is an outlier (-1)
                                           # in ANY view is left out of training (SSG's code); False: only view-0 (full
                                           # body) outliers are, a part's outliers leave only that part's triplet


def _add_adversarial_config(cfg):
    _C = cfg
    _C.MODEL.CANU = CN()
    _C.MODEL.CANU.ENABLED = False          # camera-adversarial training on the pseudo-label loop (CANU-ReID)
    _C.MODEL.CANU.CONDITIONAL = True       # True: D conditioned on the pseudo-identity centroid (+CANU); False: +Adv ablation
    _C.MODEL.CANU.MU = 0.1                 # weight of the adversarial term, L_ID - mu * L_C-CAM (0.1 MMT, 0.05 SSG)
    _C.MODEL.CANU.HIDDEN_DIM = 1024        # width of the discriminator's FC layers (paper: 1024)
    _C.MODEL.CANU.MERGE = "add"            # how the ID and camera branches merge: "add", "mul" or "concat" (paper silent)
    _C.MODEL.CANU.FEATURE = "train_feature"  # what D's camera branch sees: "train_feature" (what the ID losses see,
                                           # MODEL.HEADS.NECK_FEAT) or "embedding" (the unit BNNeck embedding: the space of
                                           # the clusters and centroids). Paper silent; measured: docs/bench/canu_feature.md
    _C.MODEL.CANU.SCHEME = "minmax"        # "minmax": alternating D / encoder updates (paper); "grl": one pass, gradient reversal
    _C.MODEL.CANU.D_LR = 3.5e-4            # discriminator learning rate (Adam), at the start of the schedule below
    _C.MODEL.CANU.D_LR_SCHEDULE = "encoder"  # "encoder": D's rate follows the encoder's (SOLVER.SCHED / STEPS / GAMMA,
                                           # warm-up) from D_LR; "constant": D_LR throughout. Paper silent; its MMT / SSG
                                           # encoders keep a constant rate, so both are the same in its recipes
    _C.MODEL.ACAN = CN()
    _C.MODEL.ACAN.ENABLED = False          # ACAN: per-camera triplet + multi-camera adversarial learning
    _C.MODEL.ACAN.SCHEME = "oce"           # "none" (triplet only), "grl", "oce" (Eq. 9) or "ace" (uniform target)
    _C.MODEL.ACAN.LAMBDA = 1.0             # weight of the adversarial term (paper: 1)
    _C.MODEL.ACAN.HIDDEN_DIM = 128         # the discriminator's FC layer (paper: 128)
    _C.MODEL.ACAN.D_LR = 0.01              # discriminator learning rate (SGD; the paper's rate for new layers)
    _C.MODEL.ACAN.D_LR_SCHEDULE = "encoder"  # "encoder": D's rate follows the encoder's (SOLVER.SCHED / STEPS / GAMMA,
                                           # warm-up) from D_LR (paper: every rate x0.1 at epochs 100, 200); "constant": D_LR
    _C.MODEL.ACAN.D_NORM = True            # BatchNorm in D's hidden layer (paper silent; without it most ReLUs die, see camera.py)


def _add_acan_extra_config(cfg):
    _C = cfg
    _C.MODEL.ACAN.PIDS_PER_GROUP = 32      # P: identities of one camera per triplet group (paper: 32; x K = NUM_INSTANCE)
    _C.MODEL.ACAN.CAMERA_BATCH = 64        # camera-balanced part: floor(CAMERA_BATCH / C) images per camera (paper: 64)
    _C.MODEL.ACAN.DROP_SMALL_CAMERAS = True  # drop cameras with < PIDS_PER_GROUP ids (paper: MSMT17 cam 2); False = error
    _C.MODEL.ACAN.SAMPLER_SEED = -1        # seed of the ACAN samplers; -1 = fast-reid's shared random seed
    _C.MODEL.ACAN.DIAG_IMAGES_PER_CAMERA = 64  # diagnostics hook: training images per camera for D's confusion matrix
    _C.MODEL.ACAN.DIAG_NORMALIZE = True    # d_inter-camera on L2-normalised features (paper silent; its scale implies it)
    _C.MODEL.ACAN.DIAG_FILE = "acan_diagnostics.jsonl"  # diagnostics hook: one JSON object per evaluation, in OUTPUT_DIR


def _add_mmt_config(cfg):
    _C = cfg
    _C.MODEL.MMT = CN()
    _C.MODEL.MMT.ALPHA = 0.999             # EMA decay of the mean teachers (MMT: 0.999)
    _C.MODEL.MMT.EMA_WARMUP = True         # decay min(1 - 1/t, ALPHA) at update t (MMT's code); False = ALPHA from the start
    _C.MODEL.MMT.CE_SOFT_WEIGHT = 0.5      # weight of the soft CE (from the other net's teacher); the hard CE gets 1 - it (MMT: 0.5)
    _C.MODEL.MMT.TRI_SOFT_WEIGHT = 0.8     # weight of the soft triplet; the hard triplet gets 1 - it (MMT: 0.8)
    _C.MODEL.MMT.TEST_NET = "mean"         # test feature: "mean" of both teachers (also what is clustered) or "teacher1" /
                                           # "teacher2" (MMT's code tests the teacher with the better target mAP)
    _C.MODEL.MMT.SOURCE_WEIGHTS = []       # two fast-reid source checkpoints (net 1, net 2: two pre-trainings), classifiers
                                           # skipped; [] = MODEL.BACKBONE init (ImageNet / scratch); ignored when MODEL.WEIGHTS is set


def _add_ssg_config(cfg):
    _C = cfg
    _C.MODEL.SSG = CN()
    _C.MODEL.SSG.EMBED_DIM = 2048          # SSG's code: a triplet on FC(-> EMBED_DIM) + BN + ReLU of the pooled full-body
                                           # feature, full-body labels (training only); 0 = off
    _C.MODEL.SSG.TRIPLET = "all_positives"  # SSG's code: every positive pair against the anchor's hardest negative;
                                           # "batch_hard": fast-reid's (hardest positive, hardest negative)


def _add_eval_config(cfg):
    _C = cfg
    _C.TEST.CANU = CN()
    _C.TEST.CANU.ENABLED = True            # canu-plugin's chunked exact evaluator (fast-reid's numbers); False = fast-reid's
    _C.TEST.CANU.QUERY_CHUNK = 256         # queries scored at once: memory <~ 40 bytes x QUERY_CHUNK x gallery size
    _C.TEST.CANU.DEVICE = "auto"           # "auto" (CUDA when torch sees it, else CPU), "cpu", "cuda", "cuda:1", ...
    _C.TEST.CANU.MAX_RANK = 50             # length of the CMC curve computed (Rank-1/5/10 are reported)
    _C.TEST.CANU.THREADS = 1               # CPU threads for the ranking ops (0 = torch's); distances use torch's threads
    _C.TEST.CANU.PRODUCT = "auto"          # distances' float32 product: "auto" (torch's or numpy's BLAS: each timed on
                                           # the first rows, the faster kept for the process), "torch", "numpy"
    _C.TEST.CANU.CAMERA_DIAGNOSTICS = True  # add cam_probe (held-out linear camera probe, %), d_inter, cam_nmi (NMI of
                                           # cameras and clusters of the test features) and mAP_cn / Rank-1_cn (the
                                           # metrics after per-camera normalization) to the results
    _C.TEST.CAMERA_NORM = False            # rank (f - m_cam) / s_cam: per-camera mean / std over query + gallery (no
                                           # training needed; canu's evaluator only)
    _C.TEST.CANU.PROBE_MAX_IMAGES = 4000   # camera probe: random subset of at most this many test images (0 = all)
    _C.TEST.CANU.PCA_CAMERAS = [0, 1]      # PCA PNG of these two cameras' test features in OUTPUT_DIR ([] = none)
    _C.TEST.CANU.RERANK_SPARSE = True      # TEST.RERANK with the sparse k-reciprocal Jaccard; False = fast-reid's dense one


def _add_video_config(cfg):
    _C = cfg
    _C.VIDEO = CN()                        # used when DATASETS.NAMES / TESTS are tracklet datasets (MARS, ...)
    _C.VIDEO.SEQ_LEN = 4                   # T frames per training tracklet (our choice, torchreid's / common video
                                           # setting; the ACAN paper gives none); a batch holds IMS_PER_BATCH tracklets
    _C.VIDEO.SAMPLE = "random"             # training frames: "random" (T sorted random frames) or "evenly" (torchreid)
    _C.VIDEO.POOLING = "avg"               # temporal pooling of the per-frame pooled features: "avg" or "attention"
    _C.VIDEO.CONSISTENT_AUG = True         # one random augmentation per training clip (all T frames alike)
    _C.VIDEO.TEST_FRAMES = 0               # frames per tracklet at test / feature extraction: 0 = all, n = n evenly
                                           # spaced; frames run in batches of TEST.IMS_PER_BATCH, pooled per tracklet
    _C.TEST.VIDEO_PROTOCOL = "official"    # tracklet test sets: "official" = each release's own evaluation (MARS's
                                           # MATLAB code: every non-junk test tracklet, queries too, is in the gallery;
                                           # its trapezoid AP is reported as mAP_trapezoid beside mAP); "torchreid" =
                                           # MARS's gallery without the query tracklets (torchreid's loader).
                                           # DukeMTMC-VideoReID / SI-Tracklet: their query/ and gallery/ folders either way


def _add_run_config(cfg):
    _C = cfg
    _C.SEED = -1                           # >= 0: seed python/numpy/torch with SEED + rank at start; -1: fast-reid's random seed
    _C.SOLVER.AMP.CPU = False              # SOLVER.AMP.ENABLED on a CPU: autocast to bfloat16 only when True (it is
                                           # ~2x slower than float32 on most CPUs); CUDA ignores it (float16 AMP as set)


def add_canu_config(cfg):
    """Add canu-plugin's keys (with defaults) to a fast-reid config, in place.

    Args:
        cfg (fastreid.config.CfgNode): from ``fastreid.config.get_cfg()``.
    Returns:
        the same cfg, for chaining.
    """
    _add_clustering_config(cfg)
    _add_pseudo_config(cfg)
    _add_adversarial_config(cfg)
    _add_acan_extra_config(cfg)
    _add_eval_config(cfg)
    _add_mmt_config(cfg)
    _add_ssg_config(cfg)
    _add_video_config(cfg)
    _add_run_config(cfg)
    return cfg
