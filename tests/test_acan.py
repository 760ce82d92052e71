"""ACAN meta-architecture: per-camera triplet, adversarial wiring (OCE, GRL) and tiny real runs."""
import copy
import logging
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

import canu_plugin  # noqa: F401
from canu_plugin.engine.adversarial import AdversarialTrainer
from canu_plugin.errors import CanuError
from canu_plugin.modeling.discriminators.camera import ACANDiscriminator
from fastreid.engine.train_loop import HookBase
from fastreid.utils.events import EventStorage

CONFIG = "configs/synthetic/acan_{}.yml"
TINY = ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.ACAN.PIDS_PER_GROUP", "4", "SOLVER.IMS_PER_BATCH", "16", "MODEL.ACAN.CAMERA_BATCH", "12",
        "MODEL.ACAN.HIDDEN_DIM", "16"]
# triplet part: camera 0 has labels 0-2, camera 1 labels 3-5; the camera-balanced part reuses some
# of those labels, so a loss that mixed the two parts would differ from the reference
TRI_CAMS, TRI_LABELS = [0] * 6 + [1] * 6, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 5]
ADV_CAMS, ADV_LABELS = [0, 1, 2, 0, 1, 2], [0, 3, 6, 1, 4, 7]


def _cfg(scheme="oce", *opts):
    from canu_plugin.engine import setup_cfg
    return setup_cfg(CONFIG.format("triplet" if scheme == "none" else scheme),
                     [*TINY, "MODEL.HEADS.NUM_CLASSES", "8", *opts])


def _model(scheme="oce", *opts):
    from fastreid.modeling import build_model
    torch.manual_seed(0)
    model = build_model(_cfg(scheme, *opts))
    model.train()
    return model


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(TRI_CAMS) + len(ADV_CAMS)
    return {"images": torch.rand(n, 3, 32, 16, generator=g) * 255, "targets": torch.tensor(TRI_LABELS + ADV_LABELS),
            "camids": torch.tensor(TRI_CAMS + ADV_CAMS), "acan_part": torch.tensor([0] * 12 + [1] * 6)}


def _features(model, batch):
    """Training-mode features of the whole batch, (B, D)."""
    images = model.preprocess_image({"images": batch["images"].clone()})
    return model.heads(model.backbone(images), batch["targets"])["features"]


def _brute_triplet(feats, labels, cams, margin=0.3):
    losses = []
    for a in range(len(labels)):
        pos = [j for j in range(len(labels)) if j != a and cams[j] == cams[a] and labels[j] == labels[a]]
        neg = [j for j in range(len(labels)) if cams[j] == cams[a] and labels[j] != labels[a]]
        if pos and neg:
            d = lambda j: float((feats[a] - feats[j]).norm())  # noqa: E731
            losses.append(max(0.0, margin + max(map(d, pos)) - min(map(d, neg))))
    return sum(losses) / len(losses)


def test_per_camera_triplet_on_the_triplet_part_matches_brute_force():
    model, batch = _model(), _batch()
    loss = model(copy.deepcopy(batch))["loss_triplet"].detach()
    feats = _features(model, batch).detach().double()
    expected = _brute_triplet(feats[:12], TRI_LABELS, TRI_CAMS)
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert abs(_brute_triplet(feats, TRI_LABELS + ADV_LABELS, TRI_CAMS + ADV_CAMS) - expected) > 1e-3


def test_adversarial_inputs_are_the_camera_balanced_part():
    model, batch = _model(), _batch()
    loss_dict, pairs = model(copy.deepcopy(batch), return_adv_inputs=True)
    (feats, cond, cams), = pairs
    assert cond is None and cams.tolist() == ADV_CAMS
    assert torch.allclose(feats, _features(model, batch)[12:], atol=1e-5)
    assert model.adversarial_dims == [(512, 512)] and feats.shape == (6, 512)
    assert not model.heads.weight.requires_grad  # no ID classifier in ACAN


def _trainer(scheme, weight=1.0, steps=2):
    model = _model(scheme)
    disc = ACANDiscriminator(_cfg(scheme), 512, 3)
    batches = [_batch() for _ in range(steps)]  # fresh copies: the model normalises images in place
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    d_opt = torch.optim.SGD(disc.parameters(), lr=0.01, momentum=0.9)
    return AdversarialTrainer(model, batches, opt, None, [disc], d_opt, scheme=scheme, weight=weight), model, disc


def _step(trainer):
    with EventStorage(0) as storage:
        trainer.run_step()
    return {k: v[0] for k, v in storage.latest().items()}


def test_oce_term_through_the_model_is_eq9():
    trainer, model, disc = _trainer("oce", weight=0.7)
    ref_model, ref_disc = copy.deepcopy(model), copy.deepcopy(disc)
    feats = _features(ref_model, _batch())
    cams = torch.tensor(ADV_CAMS)
    d_opt = torch.optim.SGD(ref_disc.parameters(), lr=0.01, momentum=0.9)
    F.cross_entropy(ref_disc(feats[12:].detach()), cams).backward()  # D's own step comes first
    d_opt.step()
    with torch.no_grad():
        logp = F.log_softmax(ref_disc(feats[12:]), 1)
    eq9 = [-sum(float(logp[n, i]) for i in range(3) if i != k) / (3 - 1) for n, k in enumerate(ADV_CAMS)]
    metrics = _step(trainer)
    assert metrics["loss_cam_adv"] == pytest.approx(0.7 * sum(eq9) / len(eq9), rel=1e-4)
    assert metrics["loss_triplet"] == pytest.approx(_brute_triplet(feats.detach()[:12], TRI_LABELS, TRI_CAMS), rel=1e-4)
    for p, q in zip(disc.parameters(), ref_disc.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_grl_reverses_the_discriminator_gradient_in_the_backbone():
    lam = 0.5
    trainer, model, disc = _trainer("grl", weight=lam)
    ref_model, ref_disc = copy.deepcopy(model), copy.deepcopy(disc)
    feats = _features(ref_model, _batch())
    tri = ref_model.triplet_losses(feats[:12], torch.tensor(TRI_LABELS), torch.tensor(TRI_CAMS))["loss_triplet"]
    ce = F.cross_entropy(ref_disc(feats[12:]), torch.tensor(ADV_CAMS))
    w_ref = ref_model.backbone.conv1.weight
    g_tri = torch.autograd.grad(tri, w_ref, retain_graph=True)[0]
    g_ce = torch.autograd.grad(ce, w_ref, retain_graph=True)[0]
    g_d = torch.autograd.grad(ce, ref_disc.classifier.weight)[0]
    trainer.optimizer.step = trainer.d_optimizer.step = lambda: None  # inspect the gradients only
    _step(trainer)
    got = model.backbone.conv1.weight.grad
    assert torch.allclose(got, g_tri - lam * g_ce, atol=1e-5, rtol=1e-3)
    assert not torch.allclose(got, g_tri + lam * g_ce, atol=1e-5, rtol=1e-3)
    assert torch.allclose(disc.classifier.weight.grad, g_d, atol=1e-6)  # D itself minimises the CE
    assert model.heads.weight.grad is None


def test_config_and_batch_errors():
    with pytest.raises(CanuError, match="TripletLoss"):
        _model("oce", "MODEL.LOSSES.NAME", "('CrossEntropyLoss', 'TripletLoss')")
    with pytest.raises(CanuError, match="HARD_MINING True"):
        _model("oce", "MODEL.LOSSES.TRI.HARD_MINING", "False")
    model, batch = _model(), _batch()
    batch["acan_part"] = torch.zeros(18, dtype=torch.long)
    with pytest.raises(CanuError, match="build_acan_train_loader"):
        model(batch)
    plain = _batch()
    del plain["acan_part"]  # a plain fast-reid batch: every sample in both terms
    _, ((feats, _, cams),) = model(plain, return_adv_inputs=True)
    assert feats.shape[0] == 18 and cams.tolist() == TRI_CAMS + ADV_CAMS


@pytest.mark.parametrize("scheme", ["none", "grl", "oce", "ace"])
def test_tiny_run_of_each_scheme(tiny_trainer, tmp_path, scheme):
    trainer = tiny_trainer(CONFIG.format("triplet" if scheme == "none" else scheme), tmp_path, *TINY,
                           "SOLVER.MAX_EPOCH", "1", "MODEL.HEADS.NUM_CLASSES", "0")
    adversarial = isinstance(trainer._trainer, AdversarialTrainer)
    assert adversarial == (scheme != "none")
    if adversarial:
        assert trainer._trainer.scheme == scheme and isinstance(trainer.discriminators[0], ACANDiscriminator)
        assert trainer.discriminators[0].classifier.out_features == 6
    before = trainer.unwrapped_model.backbone.conv1.weight.detach().clone()
    trainer.iters_per_epoch = trainer.max_iter = 3  # three real steps exercise the loop; keeps the test fast
    trainer.train()
    hist = trainer.storage.histories()
    expected = {"none": ["total_loss"],  # fast-reid logs a single loss as total_loss only
                "grl": ["loss_triplet", "loss_cam_grl", "cam_disc_acc"],
                "oce": ["loss_triplet", "loss_cam_adv", "cam_disc_acc"],
                "ace": ["loss_triplet", "loss_cam_adv", "cam_disc_acc"]}[scheme]
    for key in expected:
        assert math.isfinite(hist[key].latest()), key
    assert not torch.equal(before, trainer.unwrapped_model.backbone.conv1.weight)
    assert 0.0 <= trainer._last_eval_results["mAP"] <= 100.0
    assert (tmp_path / "model_final.pth").is_file()


class _LrProbe(HookBase):
    """(encoder's rate, discriminator's rate) at every epoch's start."""

    def __init__(self):
        self.seen = []

    def before_epoch(self):
        self.seen.append((self.trainer.optimizer.param_groups[0]["lr"], self.trainer.d_optimizer.param_groups[0]["lr"]))


# four one-step epochs, the encoder's rate x0.1 after epochs 0 and 2 (as the paper's 100 and 200)
SCHEDULE = ["SOLVER.MAX_EPOCH", "4", "SOLVER.STEPS", "[1, 3]", "SOLVER.GAMMA", "0.1", "SOLVER.WARMUP_ITERS", "0",
            "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "100", "MODEL.HEADS.NUM_CLASSES", "0"]


def _schedule_run(tiny_trainer, out, *opts, resume=False):
    trainer = tiny_trainer(CONFIG.format("oce"), out, *TINY, *SCHEDULE, *opts)
    probe = _LrProbe()
    trainer.register_hooks([probe])
    trainer.resume_or_load(resume=resume)
    trainer.iters_per_epoch, trainer.max_iter = 1, 4  # one real step an epoch keeps the test fast
    trainer.train()
    return probe.seen


def test_discriminator_rate_follows_the_encoder_schedule_and_resumes(tiny_trainer, tmp_path, caplog):
    full = _schedule_run(tiny_trainer, tmp_path / "full")
    enc, disc = zip(*full)
    assert enc[0] == pytest.approx(3.5e-4) and disc[0] == pytest.approx(0.01)
    assert disc == pytest.approx([0.01, 1e-3, 1e-3, 1e-4])  # x0.1 at the encoder's milestones (paper)
    assert [d / e for e, d in full] == pytest.approx([0.01 / 3.5e-4] * 4)
    saved = torch.load(tmp_path / "full" / "model_0000.pth", weights_only=True)
    assert saved["d_lr_sched"]["last_epoch"] == 1
    cut = tmp_path / "cut"  # killed during epoch 1: the resumed run has the same rates
    shutil.copytree(tmp_path / "full", cut)
    (cut / "last_checkpoint").write_text("model_0000.pth")
    caplog.set_level(logging.WARNING, logger="canu_plugin.engine.adversarial")
    resumed = _schedule_run(tiny_trainer, cut, resume=True)
    assert [x for pair in resumed for x in pair] == pytest.approx([x for pair in full[1:] for x in pair])
    assert "no discriminator learning-rate scheduler" not in caplog.text
    constant = _schedule_run(tiny_trainer, tmp_path / "constant", "MODEL.ACAN.D_LR_SCHEDULE", "constant")
    assert [d for _, d in constant] == pytest.approx([0.01] * 4) and [e for e, _ in constant] == pytest.approx(enc)
    (tmp_path / "constant" / "last_checkpoint").write_text("model_0002.pth")  # resumed with the other key: said
    _schedule_run(tiny_trainer, tmp_path / "constant", resume=True)
    assert "no discriminator learning-rate scheduler" in caplog.text
    with pytest.raises(CanuError, match="D_LR_SCHEDULE"):
        tiny_trainer(CONFIG.format("oce"), tmp_path / "bad", *TINY, "MODEL.ACAN.D_LR_SCHEDULE", "cosine")
