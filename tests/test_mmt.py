"""MMT / CANU-MMT: mean-teacher EMA, loss wiring (net1 <- teacher2), the pseudo-label contract with
four classifiers, source-weight loading, the two-view loader, and tiny real runs (+ resume) on CPU."""
import math
import os
import random
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastreid.engine.train_loop import HookBase
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage

import canu_plugin.modeling.meta_arch.mmt as mmt_module
from canu_plugin.data import pseudo_labels as pseudo
from canu_plugin.engine import setup_cfg
from canu_plugin.engine.hooks import MeanTeacherHook
from canu_plugin.errors import CanuError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "configs", "synthetic", "quick_mmt.yml")
FAST = ["CLUSTERING.K1", "10", "CLUSTERING.K2", "3", "TEST.EVAL_PERIOD", "100"]


def _model(*opts, seed=0):
    torch.manual_seed(seed)
    return build_model(setup_cfg(QUICK, list(opts)))


def _batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.rand(b, 3, 32, 16, generator=g) * 255,
            "images_2": torch.rand(b, 3, 32, 16, generator=g) * 255,
            "targets": torch.arange(b) // 2, "camids": torch.arange(b) % 2}


def test_configs_load():
    for name in ("Base-MMT", "mmt_M2D", "canu_mmt_D2M", "adv_mmt_M2D"):
        cfg = setup_cfg(os.path.join(REPO, "configs", "mmt", name + ".yml"), ["MODEL.DEVICE", "cpu"])
        assert cfg.MODEL.META_ARCHITECTURE == "MMT" and cfg.PSEUDO.ITERS_PER_EPOCH == 400
    cfg = setup_cfg(os.path.join(REPO, "configs", "mmt", "canu_mmt_M2D.yml"), ["MODEL.DEVICE", "cpu"])
    assert len(cfg.MODEL.MMT.SOURCE_WEIGHTS) == 2 and cfg.MODEL.CANU.ENABLED and cfg.MODEL.CANU.CONDITIONAL
    assert cfg.CLUSTERING.EPS_RULE == "quantile_once" and cfg.SOLVER.IMS_PER_BATCH == 64
    for name in ("mmt_A2B", "canu_mmt_A2B", "adv_mmt_A2B"):
        cfg = setup_cfg(os.path.join(REPO, "configs", "synthetic", name + ".yml"))
        assert cfg.MODEL.META_ARCHITECTURE == "MMT" and cfg.DATASETS.NAMES == ("SynthB",)


def test_ema_update_math(pseudo_of):
    m = _model()
    m.install_clusters(pseudo_of(torch.randn(4, 512)))
    with torch.no_grad():
        for p in m.net1.parameters():
            p.add_(1.0)
    bn_before = m.teacher1.backbone.bn1.running_mean.clone()
    m.update_teachers()  # warm-up: step 1 has decay 0, the teachers become their students
    for (n, t), s in zip(m.teacher1.named_parameters(), m.net1.parameters()):
        assert torch.equal(t, s), n
    assert torch.equal(m.teacher1.backbone.bn1.running_mean, bn_before)  # buffers: not averaged
    for step, alpha in ((4, 0.75), (10 ** 6, 0.999)):  # min(1 - 1/t, ALPHA) at the t-th update
        m.ema_step.fill_(step - 1)
        before = {n: p.clone() for n, p in m.teacher2.named_parameters()}
        with torch.no_grad():
            for p in m.net2.parameters():
                p.add_(torch.randn_like(p))
        m.update_teachers()
        for (n, t), s in zip(m.teacher2.named_parameters(), m.net2.parameters()):
            assert torch.allclose(t, alpha * before[n] + (1 - alpha) * s, atol=1e-6), n
    assert not any(p.requires_grad for t in m.teachers for p in t.parameters())


def test_losses_pair_each_student_with_the_other_teacher(monkeypatch, pseudo_of):
    m = _model("MODEL.MMT.CE_SOFT_WEIGHT", "0.25", "MODEL.MMT.TRI_SOFT_WEIGHT", "0.75")
    m.install_clusters(pseudo_of(torch.randn(4, 512)))
    with torch.no_grad():  # four distinguishable networks
        for t in m.teachers:
            for p in t.parameters():
                p.add_(0.05 * torch.randn_like(p))
    calls = {"ce": [], "tri": []}
    real_ce, real_tri = mmt_module.soft_cross_entropy, mmt_module.soft_triplet
    monkeypatch.setattr(mmt_module, "soft_cross_entropy", lambda a, b: calls["ce"].append((a, b)) or real_ce(a, b))
    monkeypatch.setattr(mmt_module, "soft_triplet", lambda a, b, y: calls["tri"].append((a, b)) or real_tri(a, b, y))
    batch = _batch()
    views = [batch["images"].clone(), batch["images_2"].clone()]
    m.train()
    with EventStorage(0):
        loss_dict, adv = m(batch, return_adv_inputs=True)
        with torch.no_grad():  # train-mode BN: outputs depend on the batch only
            x = [m.net1.preprocess_image(v) for v in views]
            out = {name: net.heads(net.backbone(x[i]), batch["targets"])
                   for name, net, i in (("s1", m.net1, 0), ("s2", m.net2, 1), ("t1", m.teacher1, 0),
                                        ("t2", m.teacher2, 1))}
            hard = [net.losses(out[k], batch["targets"]) for net, k in ((m.net1, "s1"), (m.net2, "s2"))]
    expect = {"ce": [("s1", "t2"), ("s2", "t1")], "tri": [("s1", "t2"), ("s2", "t1")]}
    key = {"ce": "pred_class_logits", "tri": "features"}
    for kind in ("ce", "tri"):
        for (student, teacher), (s, t) in zip(calls[kind], expect[kind]):
            assert torch.allclose(student, out[s][key[kind]], atol=1e-4), (kind, s)
            assert torch.allclose(teacher, out[t][key[kind]], atol=1e-4), (kind, t)
            assert student.requires_grad and not teacher.requires_grad
    assert set(loss_dict) == {"loss_cls", "loss_triplet", "loss_cls_soft", "loss_triplet_soft"}
    assert torch.allclose(loss_dict["loss_cls"], 0.75 * (hard[0]["loss_cls"] + hard[1]["loss_cls"]), atol=1e-5)
    assert torch.allclose(loss_dict["loss_triplet"], 0.25 * (hard[0]["loss_triplet"] + hard[1]["loss_triplet"]),
                          atol=1e-5)
    soft_ce = real_ce(out["s1"]["pred_class_logits"], out["t2"]["pred_class_logits"]) + real_ce(
        out["s2"]["pred_class_logits"], out["t1"]["pred_class_logits"])
    assert torch.allclose(loss_dict["loss_cls_soft"], 0.25 * soft_ce, atol=1e-5)
    assert [f.shape for f, _ in adv] == [(8, 512)] * 2 and torch.equal(adv[0][1], m.centroids[batch["targets"]])
    with pytest.raises(CanuError, match="two augmented views"):
        m({k: v for k, v in _batch().items() if k != "images_2"})


def test_eval_is_the_mean_of_the_teachers_and_pseudo_label_contract(pseudo_of):
    m = _model()
    assert m.adversarial_dims == [(512, 512), (512, 512)]
    old = [net.heads.weight for net in m.students]
    centroids = torch.randn(6, 512)
    pairs = m.install_clusters(pseudo_of(centroids))
    assert [o for o, _ in pairs] == old and [n for _, n in pairs] == [net.heads.weight for net in m.students]
    weights = m.classifier_weights()
    assert len(weights) == 4 and all(w.shape == (6, 512) for w in weights)
    assert all(torch.allclose(w, F.normalize(centroids, dim=1)) for w in weights)
    assert [w.requires_grad for w in weights] == [True, True, False, False]
    saved = [torch.randn(6, 512) for _ in range(4)]
    m.install_clusters(pseudo_of(centroids), classifier_weights=saved)
    assert all(torch.equal(w, s) for w, s in zip(m.classifier_weights(), saved))
    with pytest.raises(CanuError, match="four classifiers"):
        m.install_clusters(pseudo_of(centroids), classifier_weights=saved[:2])
    assert torch.equal(m.centroids_of(torch.tensor([5, 0])), centroids[[5, 0]])
    m.eval()
    images = torch.rand(3, 3, 32, 16) * 255
    with torch.no_grad():
        feats = m({"images": images.clone()})
        x = m.net1.preprocess_image(images)
        expect = (F.normalize(m.teacher1.heads(m.teacher1.backbone(x)), dim=1)
                  + F.normalize(m.teacher2.heads(m.teacher2.backbone(x)), dim=1)) / 2
    assert torch.allclose(feats, expect, atol=1e-5)


def _source_checkpoint(path, seed, num_classes=7):
    net = _model("MODEL.META_ARCHITECTURE", "PseudoBaseline", "MODEL.HEADS.NUM_CLASSES", str(num_classes), seed=seed)
    torch.save({"model": net.state_dict(), "iteration": 5}, path)
    return net.state_dict()


def test_two_source_weights_end_up_in_their_networks(tmp_path):
    p1, p2 = str(tmp_path / "src1.pth"), str(tmp_path / "src2.pth")
    s1, s2 = _source_checkpoint(p1, seed=1), _source_checkpoint(p2, seed=2)
    m = _model("MODEL.MMT.SOURCE_WEIGHTS", str([p1, p2]))
    key = "backbone.conv1.weight"
    assert not torch.equal(s1[key], s2[key])
    for net, teacher, src in ((m.net1, m.teacher1, s1), (m.net2, m.teacher2, s2)):
        sd, tsd = net.state_dict(), teacher.state_dict()
        for k in (key, "backbone.layer4.1.bn2.running_var", "heads.bottleneck.0.weight"):
            assert torch.equal(sd[k], src[k]) and torch.equal(tsd[k], src[k]), k
        assert net.heads.weight.shape[0] == 0  # the source classifier (7 classes) is skipped
    with pytest.raises(CanuError, match="does not exist"):
        _model("MODEL.MMT.SOURCE_WEIGHTS", str([p1, str(tmp_path / "missing.pth")]))
    with pytest.raises(CanuError, match="two checkpoints"):
        _model("MODEL.MMT.SOURCE_WEIGHTS", str([p1]))
    bad = dict(s1)
    bad[key] = torch.zeros(3, 3, 3, 3)
    torch.save({"model": bad}, tmp_path / "bad.pth")
    with pytest.raises(CanuError, match="backbone"):
        _model("MODEL.MMT.SOURCE_WEIGHTS", str([p1, str(tmp_path / "bad.pth")]))
    with pytest.raises(CanuError, match="single-network checkpoint"):
        m.load_state_dict(s1, strict=False)  # a source model given as MODEL.WEIGHTS


def test_mmt_checkpoint_round_trip_and_mismatch(tmp_path):
    from fastreid.utils.checkpoint import Checkpointer
    m = _model(seed=3)
    torch.save({"model": m.state_dict()}, tmp_path / "mmt.pth")
    other = _model("MODEL.MMT.SOURCE_WEIGHTS", "['unused.pth', 'unused.pth']", "MODEL.WEIGHTS", "set", seed=4)
    Checkpointer(other).load(str(tmp_path / "mmt.pth"))  # MODEL.WEIGHTS set: the source files are not read
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in other.state_dict().items())
    sd = m.state_dict()
    sd["teacher2.backbone.conv1.weight"] = torch.zeros(1, 3, 3, 3)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(CanuError, match="MMT model's backbones"):
        Checkpointer(other).load(str(tmp_path / "bad.pth"))


def test_two_view_loader(tiny_items):
    target = pseudo.TargetSet(tiny_items)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    small = ["SOLVER.IMS_PER_BATCH", "4", "DATALOADER.NUM_INSTANCE", "2"]
    torch.manual_seed(0)
    random.seed(0)
    labels = pseudo.PseudoLabels(labels=labels, centroids=torch.zeros(4, 8), epoch=0)
    views = _model().num_train_views
    assert views == 2
    batch = next(iter(pseudo.pseudo_label_loader(setup_cfg(QUICK, small), target, labels, 0, views)))
    assert batch["images_2"].shape == batch["images"].shape == (4, 3, 32, 16)
    assert not torch.equal(batch["images"], batch["images_2"])  # independent random flips / crops
    fixed = small + ["INPUT.FLIP.ENABLED", "False", "INPUT.PADDING.ENABLED", "False"]
    batch = next(iter(pseudo.pseudo_label_loader(setup_cfg(QUICK, fixed), target, labels, 0, views)))
    assert torch.equal(batch["images"], batch["images_2"])  # same image, deterministic transforms
    plain = small + ["MODEL.META_ARCHITECTURE", "PseudoBaseline"]
    one = build_model(setup_cfg(QUICK, plain)).num_train_views
    assert one == 1 and "images_2" not in next(iter(pseudo.pseudo_label_loader(setup_cfg(QUICK, plain), target,
                                                                               labels, 0, one)))


class Probe(HookBase):
    """After the clustering hook: the four classifiers and the teachers' state at each epoch start."""

    def __init__(self):
        self.seen = []

    def before_epoch(self):
        m = self.trainer.unwrapped_model
        opt_params = {id(p) for g in self.trainer.optimizer.param_groups for p in g["params"]}
        self.seen.append({"classifiers": [w.detach().clone() for w in m.classifier_weights()],
                          "teachers_in_optimizer": any(id(p) in opt_params for t in m.teachers for p in t.parameters()),
                          "students_in_optimizer": all(id(n.heads.weight) in opt_params for n in m.students)})


@pytest.fixture
def make_trainer(tiny_trainer):
    def make(out, *opts):
        trainer = tiny_trainer(QUICK, out, *FAST, *opts)
        probe = Probe()
        trainer.register_hooks([probe])
        return trainer, probe
    return make


def _finite_losses(trainer, names):
    hist = trainer.storage.histories()
    for name in names:
        assert name in hist and all(math.isfinite(v) for v, _ in hist[name].values()), name


def test_tiny_mmt_epoch_with_kmeans(make_trainer, tmp_path):
    trainer, probe = make_trainer(tmp_path, "SOLVER.MAX_EPOCH", "1", "CLUSTERING.METHOD", "kmeans",
                              "CLUSTERING.NUM_CLUSTERS", "8")
    assert any(isinstance(h, MeanTeacherHook) for h in trainer._hooks)
    model = trainer.unwrapped_model
    before = model.teacher1.backbone.conv1.weight.detach().clone()
    trainer.train()
    assert model.ema_step.item() == trainer.max_iter == 3
    assert not torch.equal(model.teacher1.backbone.conv1.weight, before)
    assert not torch.equal(model.teacher1.backbone.conv1.weight, model.net1.backbone.conv1.weight)
    _finite_losses(trainer, ["loss_cls", "loss_triplet", "loss_cls_soft", "loss_triplet_soft"])
    seen = probe.seen[0]
    assert [c.shape[0] for c in seen["classifiers"]] == [8] * 4
    assert seen["students_in_optimizer"] and not seen["teachers_in_optimizer"]


def test_tiny_canu_mmt_run_and_resume(make_trainer, tmp_path):
    canu = ["MODEL.CANU.ENABLED", "True", "MODEL.CANU.HIDDEN_DIM", "64", "CLUSTERING.PERIOD", "2"]
    trainer, _ = make_trainer(tmp_path, "SOLVER.MAX_EPOCH", "1", *canu)
    assert [type(d).__name__ for d in trainer.discriminators] == ["ConditionalCameraDiscriminator"] * 2
    trainer.train()
    _finite_losses(trainer, ["loss_cls_soft", "loss_triplet_soft", "loss_cam_adv", "cam_disc_acc"])
    saved = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert len(saved["pseudo_labels"]["classifiers"]) == 4 and saved["d_optimizer"]["state"]
    resumed, probe = make_trainer(tmp_path, "SOLVER.MAX_EPOCH", "2", *canu)
    resumed.resume_or_load(resume=True)
    assert resumed.start_epoch == 1
    state = resumed.unwrapped_model.state_dict()
    teachers = [k for k in saved["model"] if k.startswith("teacher") and not k.endswith("heads.weight")]
    assert teachers and all(torch.equal(state[k], saved["model"][k]) for k in teachers)
    assert state["ema_step"].item() == 3
    for k, v in resumed.discriminators.state_dict().items():
        assert torch.equal(v, saved["discriminators"][k]), k
    resumed.train()  # epoch 1 keeps epoch 0's clusters (PERIOD 2): the four saved classifiers come back
    for w, s in zip(probe.seen[0]["classifiers"], saved["pseudo_labels"]["classifiers"]):
        assert torch.equal(w, s)
    assert probe.seen[0]["students_in_optimizer"] and not probe.seen[0]["teachers_in_optimizer"]
    assert resumed.unwrapped_model.ema_step.item() == 6


def test_two_view_dataset_reads_each_image_once(tiny_items, monkeypatch):
    import fastreid.data.common as common
    from fastreid.data.transforms import build_transforms
    reads = []
    real = common.read_image
    monkeypatch.setattr(common, "read_image", lambda path, *a: reads.append(path) or real(path, *a))
    data = pseudo.PseudoLabelDataset(tiny_items, build_transforms(setup_cfg(QUICK), is_train=True), num_views=2)
    item = data[3]
    assert reads == [tiny_items[3][0]] and item["images_2"].shape == item["images"].shape


def test_test_net_chooses_the_tested_teacher_and_clustering_stays_on_both():
    m = _model().eval()
    images = torch.rand(3, 3, 32, 16) * 255
    with torch.no_grad():
        x = m.net1.preprocess_image(images)
        t1, t2 = (F.normalize(t.heads(t.backbone(x)), dim=1) for t in m.teachers)
        m.test_net = "teacher1"
        assert torch.allclose(m({"images": images}), t1, atol=1e-6)
        assert torch.allclose(m.cluster_forward({"images": images}), (t1 + t2) / 2, atol=1e-6)
    assert _model("MODEL.MMT.TEST_NET", "teacher2").test_net == "teacher2"
    with pytest.raises(CanuError, match="TEST_NET"):
        _model("MODEL.MMT.TEST_NET", "best")


class AdamProbe(HookBase):
    """After the clustering hook, at each epoch start: Adam's moments of net1's first conv, the size of
    the discriminators' optimizer state and the teachers' EMA step count."""

    def __init__(self):
        self.seen = []

    def before_epoch(self):
        t = self.trainer
        state = t.optimizer.state.get(t.unwrapped_model.net1.backbone.conv1.weight, {})
        self.seen.append({"moments": [float(state[k].abs().sum()) if k in state else 0.0 for k in ("exp_avg", "exp_avg_sq")],
                          "d_state": len(t.d_optimizer.state), "ema_step": int(t.unwrapped_model.ema_step)})


def _adam_run(tiny_trainer, out, *opts, resume=False):
    canu = ["MODEL.CANU.ENABLED", "True", "MODEL.CANU.HIDDEN_DIM", "32", "CLUSTERING.METHOD", "kmeans",
            "CLUSTERING.NUM_CLUSTERS", "8"]
    trainer = tiny_trainer(QUICK, out, *FAST, *canu, *opts)
    probe = AdamProbe()
    trainer.register_hooks([probe])
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return probe.seen


def test_each_clustering_restarts_adam_for_all_parameters_and_resume_repeats_the_run(tiny_trainer, tmp_path):
    full = _adam_run(tiny_trainer, tmp_path / "full")
    assert full[1]["moments"] == [0.0, 0.0]  # MMT's code: a new Adam after every clustering
    assert full[1]["d_state"] > 0 and full[1]["ema_step"] == 3  # CANU's D and the EMA teachers go on
    cut = tmp_path / "cut"  # killed during epoch 1: the resumed run repeats the uninterrupted one
    shutil.copytree(tmp_path / "full", cut)
    (cut / "last_checkpoint").write_text("model_0000.pth")
    assert _adam_run(tiny_trainer, cut, resume=True) == full[1:]
    a, b = (torch.load(d / "model_final.pth", weights_only=True) for d in (tmp_path / "full", cut))
    for k in ("net1.backbone.conv1.weight", "net2.heads.weight", "teacher1.backbone.conv1.weight"):
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k
    kept = _adam_run(tiny_trainer, tmp_path / "kept", "PSEUDO.RESET_OPTIMIZER", "False")
    assert all(m > 0 for m in kept[1]["moments"])  # the old rule: only the re-sized classifiers restart
