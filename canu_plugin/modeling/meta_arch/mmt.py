"""``MMT``: Mutual Mean-Teaching (Ge et al., ICLR 2020) on fast-reid, the base of CANU-MMT.

Four networks built from the same config, each a :class:`PseudoBaseline` (fast-reid backbone +
``PseudoEmbeddingHead``): the students ``net1``, ``net2`` and their mean teachers ``teacher1``,
``teacher2`` (deep copies; no gradient; after every optimizer step :meth:`MMT.update_teachers`
moves each teacher's parameters towards its student, an EMA of decay ``MODEL.MMT.ALPHA`` with
MMT's warm-up ``min(1 - 1/t, ALPHA)`` at step t; teachers' BatchNorm statistics follow their own
train-mode forward passes, as in MMT's code).

Training batches hold two independent random augmentations of the same images (see
:class:`canu_plugin.data.pseudo_labels.PseudoLabelDataset`, ``num_train_views`` 2): ``"images"`` feeds net1 and teacher1,
``"images_2"`` net2 and teacher2 (as MMT's code does), so each student learns from the *other*
network's teacher seeing the *other* view. With w_ce = ``CE_SOFT_WEIGHT``, w_tri = ``TRI_SOFT_WEIGHT``:

- ``loss_cls``          = (1 - w_ce)  * (CE(net1) + CE(net2)), fast-reid's cross-entropy on the hard pseudo-labels
- ``loss_triplet``      = (1 - w_tri) * (TRI(net1) + TRI(net2)), fast-reid's batch-hard triplet
- ``loss_cls_soft``     = w_ce  * (softCE(net1 <- teacher2) + softCE(net2 <- teacher1))
- ``loss_triplet_soft`` = w_tri * (softTRI(net1 <- teacher2) + softTRI(net2 <- teacher1))

(other ``MODEL.LOSSES.NAME`` terms of fast-reid are summed over the two students, unweighted).

The label generator clusters the mean of the two teachers' L2-normalised embeddings
(:meth:`MMT.cluster_forward`, MMT's clustering step); all four classifiers are initialised from its
centroids, and (``PSEUDO.RESET_OPTIMIZER``, MMT's new Adam after each clustering) the trainer
restarts the optimizer's state of all parameters; the teachers' EMA goes on. Evaluation mode
returns the test feature, ``MODEL.MMT.TEST_NET``: "mean" (default, that same ensemble) or one
teacher ("teacher1" / "teacher2": MMT's code tests one teacher, the one with the better target mAP,
a choice made on the target's labels; the ensemble needs none).

CANU-MMT: ``forward(batch, return_adv_inputs=True)`` also returns one discriminator input per
network, ``[(net1's features, centroid), (net2's features, centroid)]``, the features being the
head's training ``features`` (the pooled embedding the triplet losses use).

Initialisation: ``MODEL.MMT.SOURCE_WEIGHTS`` = two fast-reid checkpoints of source models trained
separately (MMT's two pre-trainings), loaded into net k and teacher k; their classifiers are
skipped (another number of classes). Empty: both nets start from ``MODEL.BACKBONE`` (ImageNet or
scratch) with different random heads. ``MODEL.WEIGHTS`` (an MMT checkpoint: eval, fine-tuning)
takes precedence: the source files are then not read.
"""
import copy
import logging
import os

import torch
import torch.nn.functional as F
from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from torch import nn

from canu_plugin.checkpoint import backbone_mismatches, safe_load_file, state_dict_of
from canu_plugin.data.keys import SECOND_VIEW
from canu_plugin.errors import CanuError
from canu_plugin.modeling.contract import PseudoLabelModel, adversarial_feature
from canu_plugin.modeling.losses import soft_cross_entropy, soft_triplet
from canu_plugin.modeling.meta_arch.pseudo_baseline import PseudoBaseline

logger = logging.getLogger(__name__)
TEST_NETS = ("mean", "teacher1", "teacher2")  # MODEL.MMT.TEST_NET


def load_source_weights(net, path):
    """Load a source model (fast-reid Baseline / PseudoBaseline checkpoint) into ``net``, in place.

    The classifier (``heads.weight``, another number of classes) and head tensors of another
    shape are skipped; the backbone must match exactly.

    Raises:
        CanuError: missing or unreadable file, backbone of another architecture.
    """
    if not os.path.isfile(path):
        raise CanuError(f"MODEL.MMT.SOURCE_WEIGHTS: {path!r} does not exist. Train the two source models first "
                        "(e.g. tools/train_net.py --config-file configs/Market1501/sup_R50.yml OUTPUT_DIR ...) "
                        "or fix the path; set MODEL.MMT.SOURCE_WEIGHTS [] to start from MODEL.BACKBONE.")
    state = state_dict_of(safe_load_file(None, path))  # weights_only load (numpy too); CanuError on a bad file
    own = net.state_dict()
    bad = backbone_mismatches(own, state)
    if bad:
        raise CanuError(f"MODEL.MMT.SOURCE_WEIGHTS: {path!r} does not match this model's backbone ({len(bad)} "
                        f"tensors missing or of another shape, e.g. {', '.join(bad[:3])}): it was trained with "
                        "another MODEL.BACKBONE (NAME/DEPTH/WITH_IBN/FEAT_DIM).")
    keep = {k: v for k, v in state.items() if k in own and k != "heads.weight" and v.shape == own[k].shape}
    skipped = sorted(set(own) - set(keep) - {"heads.weight"})
    if skipped:
        logger.warning(f"{path}: not in the source checkpoint or of another shape, left as built: {skipped}")
    net.load_state_dict(keep, strict=False)
    logger.info(f"loaded {len(keep)} source tensors from {path} (classifier skipped)")


def _teacher(net):
    """A mean teacher: a deep copy of ``net`` that gets no gradient."""
    teacher = copy.deepcopy(net)
    teacher.requires_grad_(False)
    return teacher


def _outputs(net, images, targets):
    """Training-mode head outputs of one network on normalised images (B, 3, H, W):
    ``{"cls_outputs", "pred_class_logits": (B, K), "features": (B, D)}``."""
    return net.heads(net.backbone(images), targets)


@META_ARCH_REGISTRY.register()
class MMT(nn.Module, PseudoLabelModel):
    """Two PseudoBaseline students + two mean teachers (see module docstring)."""

    num_train_views = 2       # "images" feed net1 / teacher1, "images_2" net2 / teacher2
    has_mean_teachers = True  # update_teachers() after every optimizer step

    @configurable
    def __init__(self, *, net1, net2, alpha=0.999, ema_warmup=True, ce_soft_weight=0.5, tri_soft_weight=0.8,
                 test_net="mean", reset_optimizer=True):
        super().__init__()
        if test_net not in TEST_NETS:
            raise CanuError(f"MODEL.MMT.TEST_NET {test_net!r}: use one of {TEST_NETS}")
        self.test_net = test_net
        self.resets_optimizer_state = bool(reset_optimizer)  # PSEUDO.RESET_OPTIMIZER (the trainer acts on it)
        self.net1, self.net2 = net1, net2
        self.teacher1, self.teacher2 = _teacher(net1), _teacher(net2)
        self.alpha, self.ema_warmup = float(alpha), bool(ema_warmup)
        self.ce_soft_weight, self.tri_soft_weight = float(ce_soft_weight), float(tri_soft_weight)
        self.init_pseudo_label_state()  # (K, D) centroids of the teachers' averaged embedding
        self.register_buffer("ema_step", torch.zeros((), dtype=torch.long))  # EMA updates so far (warm-up)

    @classmethod
    def from_config(cls, cfg):
        """Two PseudoBaselines from ``cfg`` (+ their source weights) and the ``MODEL.MMT`` keys."""
        m = cfg.MODEL.MMT
        sources = list(m.SOURCE_WEIGHTS)
        if sources and len(sources) != 2:
            raise CanuError(f"MODEL.MMT.SOURCE_WEIGHTS needs two checkpoints (one per network), got {sources}")
        if not (0.0 <= m.ALPHA < 1.0) or not all(0.0 <= w <= 1.0 for w in (m.CE_SOFT_WEIGHT, m.TRI_SOFT_WEIGHT)):
            raise CanuError("MODEL.MMT.ALPHA must be in [0, 1) and CE_SOFT_WEIGHT / TRI_SOFT_WEIGHT in [0, 1]")
        if (sources or cfg.MODEL.WEIGHTS) and cfg.MODEL.BACKBONE.PRETRAIN:
            cfg = cfg.clone()  # every backbone tensor comes from a checkpoint: no ImageNet weights to read
            cfg.defrost()
            cfg.MODEL.BACKBONE.PRETRAIN = False
        nets = [PseudoBaseline(cfg), PseudoBaseline(cfg)]
        if sources and cfg.MODEL.WEIGHTS:
            logger.info("MODEL.WEIGHTS is set: it initialises MMT, MODEL.MMT.SOURCE_WEIGHTS is not read")
        elif sources:
            for net, path in zip(nets, sources):
                load_source_weights(net, path)
        return {"net1": nets[0], "net2": nets[1], "alpha": m.ALPHA, "ema_warmup": m.EMA_WARMUP,
                "ce_soft_weight": m.CE_SOFT_WEIGHT, "tri_soft_weight": m.TRI_SOFT_WEIGHT, "test_net": m.TEST_NET,
                "reset_optimizer": cfg.PSEUDO.RESET_OPTIMIZER}

    @property
    def device(self):
        """The device of the parameters."""
        return self.net1.device

    @property
    def students(self):
        """(net1, net2): the optimised networks."""
        return self.net1, self.net2

    @property
    def teachers(self):
        """(teacher1, teacher2): the mean teachers (no gradient)."""
        return self.teacher1, self.teacher2

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, batched_inputs, return_adv_inputs=False):
        """Evaluation: (B, D) test feature (``MODEL.MMT.TEST_NET``: the mean of the teachers'
        L2-normalised embeddings, or one teacher's). Training: the loss dict (module docstring);
        with ``return_adv_inputs`` also ``[(f1 (B, D'), c (B, D)), (f2 (B, D'), c)]``, f_k net k's
        training features and c the centroids of their clusters."""
        if not self.training:
            teachers = {"mean": self.teachers, "teacher1": self.teachers[:1], "teacher2": self.teachers[1:]}
            return self._teacher_embedding(batched_inputs, teachers[self.test_net])
        if not isinstance(batched_inputs, dict) or SECOND_VIEW not in batched_inputs:
            raise CanuError("MMT trains on two augmented views per image ('images_2'): train with "
                            "PSEUDO.ENABLED True (the pseudo-label loader draws num_train_views views)")
        targets = batched_inputs["targets"].to(self.device)
        views = [self.net1.preprocess_image(batched_inputs[k].to(self.device)) for k in ("images", SECOND_VIEW)]
        students = [_outputs(net, x, targets) for net, x in zip(self.students, views)]
        with torch.no_grad():
            teachers = [_outputs(t, x, targets) for t, x in zip(self.teachers, views)]
        loss_dict = self.losses(students, teachers, targets)
        if not return_adv_inputs:
            return loss_dict
        cond = self.centroids_of(targets)
        return loss_dict, [(adversarial_feature(net.adv_feature, out["features"], out["embedding"]), cond)
                           for net, out in zip(self.students, students)]

    def _teacher_embedding(self, batched_inputs, teachers):
        """(B, D) mean of the given teachers' L2-normalised eval-mode embeddings."""
        images = self.net1.preprocess_image(batched_inputs)
        return sum(F.normalize(t.heads(t.backbone(images)), dim=1) for t in teachers) / len(teachers)

    @torch.no_grad()
    def cluster_forward(self, batched_inputs):
        """(B, D) what MMT clusters, whatever is tested: the mean of both teachers' normalised
        embeddings (MMT's code, "cf = (cf_1 + cf_2) / 2"); eval mode."""
        return self._teacher_embedding(batched_inputs, self.teachers)

    def losses(self, students, teachers, targets):
        """MMT's objective.

        Args:
            students, teachers: [outputs of net/teacher 1, outputs of net/teacher 2], each a head
                output dict (``pred_class_logits`` (B, K), ``features`` (B, D)).
            targets: (B,) hard pseudo-labels.
        Returns:
            dict of scalar tensors: loss_cls, loss_triplet, loss_cls_soft, loss_triplet_soft (+ any
            other fast-reid loss of ``MODEL.LOSSES.NAME``).
        """
        hard = [net.losses(out, targets) for net, out in zip(self.students, students)]
        scale = {"loss_cls": 1.0 - self.ce_soft_weight, "loss_triplet": 1.0 - self.tri_soft_weight}
        loss_dict = {k: (hard[0][k] + hard[1][k]) * scale.get(k, 1.0) for k in hard[0]}
        (s1, s2), (t1, t2) = students, teachers  # net1 learns from teacher2, net2 from teacher1
        loss_dict["loss_cls_soft"] = self.ce_soft_weight * (
            soft_cross_entropy(s1["pred_class_logits"], t2["pred_class_logits"])
            + soft_cross_entropy(s2["pred_class_logits"], t1["pred_class_logits"]))
        loss_dict["loss_triplet_soft"] = self.tri_soft_weight * (
            soft_triplet(s1["features"], t2["features"], targets)
            + soft_triplet(s2["features"], t1["features"], targets))
        return loss_dict

    @torch.no_grad()
    def update_teachers(self):
        """One EMA step: teacher_k <- a * teacher_k + (1 - a) * net_k over all parameters, with
        a = min(1 - 1/t, ALPHA) at the t-th call (MMT's warm-up; ALPHA without EMA_WARMUP)."""
        self.ema_step += 1
        alpha = min(1.0 - 1.0 / float(self.ema_step), self.alpha) if self.ema_warmup else self.alpha
        for teacher, student in zip(self.teachers, self.students):
            params = dict(student.named_parameters())
            for name, p in teacher.named_parameters():
                p.mul_(alpha).add_(params[name].detach(), alpha=1.0 - alpha)

    # ---- the pseudo-label contract (modeling/contract.py) ------------------------------------
    @property
    def adversarial_dims(self):
        """``[(feature width, condition width)]`` of net1's and net2's discriminators."""
        return self.net1.adversarial_dims + self.net2.adversarial_dims

    def install_clusters(self, pseudo, classifier_weights=None):
        """Install a clustering in all four networks: the (K, D) centroids of the teachers' averaged
        embedding re-size every classifier (normalised centroids, or the four ``classifier_weights``
        saved with these clusters: net1, net2, teacher1, teacher2).

        Returns:
            [(old, new)] of the two students' classifiers (the teachers' are not optimised).
        """
        self.set_centroids(pseudo.centroids)
        saved = [None] * 4 if classifier_weights is None else [[w] for w in classifier_weights]
        if len(saved) != 4:
            raise CanuError(f"MMT restores four classifiers (net1, net2, teacher1, teacher2), got {len(saved)}")
        pairs = [pair for net, w in zip(self.students, saved[:2]) for pair in net.install_clusters(pseudo, w)]
        for teacher, w in zip(self.teachers, saved[2:]):
            teacher.install_clusters(pseudo, w)
            teacher.requires_grad_(False)
        return pairs

    def classifier_weights(self):
        """The four classifier weights, [(K, D)] x 4: net1, net2, teacher1, teacher2."""
        return [w for net in self.students + self.teachers for w in net.classifier_weights()]

    def load_state_dict(self, state_dict, *args, **kwargs):
        """nn.Module's, refusing a single-network checkpoint (it would silently load nothing) and an
        MMT checkpoint whose backbones lack tensors (fast-reid's Checkpointer drops mis-shaped ones)."""
        if not any(k.startswith("net1.") for k in state_dict):
            if any(k.startswith("backbone.") for k in state_dict):
                raise CanuError("MODEL.WEIGHTS is a single-network checkpoint (a source model?): MMT's weights are "
                                "net1/net2/teacher1/teacher2. Give the two source models in "
                                "MODEL.MMT.SOURCE_WEIGHTS and leave MODEL.WEIGHTS empty.")
        else:
            bad = backbone_mismatches(self.state_dict(), state_dict)
            if bad:
                raise CanuError(f"checkpoint does not match this MMT model's backbones: {len(bad)} tensors missing "
                                f"or of another shape (e.g. {', '.join(bad[:3])}); it was trained with another "
                                "MODEL.BACKBONE (NAME/DEPTH/WITH_IBN).")
        return super().load_state_dict(state_dict, *args, **kwargs)
