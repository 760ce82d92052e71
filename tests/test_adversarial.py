"""AdversarialTrainer: the gradient rules of the min-max (CANU) and of ACAN's schemes."""
import copy

import pytest
import torch
from torch import nn

import canu_plugin  # noqa: F401
from canu_plugin.engine.adversarial import AdversarialTrainer
from canu_plugin.engine.run_files import epoch_records
from canu_plugin.modeling import losses as L
from fastreid.utils.events import EventStorage


class Toy(nn.Module):
    """Encoder + a learnable 'centroid' that must never get an adversarial gradient."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Linear(4, 6)
        self.cond = nn.Parameter(torch.randn(8, 6))

    def forward(self, data, return_adv_inputs=False):
        f = self.enc(data["images"])
        return {"loss_id": f.sum() * 0.0}, [(f, self.cond)]


def _setup(scheme, weight=1.0, conditional=True):
    torch.manual_seed(1)
    model = Toy()
    disc = nn.Sequential(nn.Linear(6, 3)) if not conditional else None
    d = _CondD() if conditional else _Uncond(disc)
    data = {"images": torch.randn(8, 4), "camids": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])}
    opt = torch.optim.SGD([model.enc.weight, model.enc.bias], lr=0.5)
    d_opt = torch.optim.SGD(d.parameters(), lr=0.1)
    trainer = AdversarialTrainer(model, [data] * 3, opt, None, [d], d_opt, scheme=scheme, weight=weight)
    return trainer, model, d, data


class _CondD(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 5), nn.Linear(6, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, f, c):
        return self.out(torch.relu(self.a(f) + self.b(c)))


class _Uncond(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, f, c=None):
        return self.net(f)


def _step(trainer):
    with EventStorage(0) as storage:
        trainer.run_step()
    return storage


@pytest.mark.parametrize("scheme", ["minmax", "grl", "oce", "ace"])
def test_no_adversarial_gradient_reaches_the_condition(scheme):
    trainer, model, _, _ = _setup(scheme)
    storage = _step(trainer)
    assert model.cond.grad is None or torch.count_nonzero(model.cond.grad) == 0
    assert "cam_disc_acc" in storage.latest()


def test_minmax_discriminator_moves_only_by_its_own_step():
    trainer, model, d, data = _setup("minmax")
    ref = copy.deepcopy(d)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    f = model.enc(data["images"]).detach()
    L.camera_cross_entropy(ref(f, model.cond.detach()), data["camids"]).backward()
    ref_opt.step()
    _step(trainer)
    for p, q in zip(d.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-7)


@pytest.mark.parametrize("scheme,direction", [("minmax", +1), ("grl", +1), ("oce", -1), ("ace", -1)])
def test_encoder_update_has_the_sign_the_scheme_asks_for(scheme, direction):
    trainer, model, d, data = _setup(scheme, weight=0.5)
    _step(trainer)  # D and encoder take one step each
    frozen = copy.deepcopy(d)
    measure = {"minmax": lambda lg: L.camera_cross_entropy(lg, data["camids"]),
               "grl": lambda lg: L.camera_cross_entropy(lg, data["camids"]),
               "oce": lambda lg: L.other_camera_equiprobability(lg, data["camids"]),
               "ace": L.all_camera_equiprobability}[scheme]
    with torch.no_grad():
        before = measure(frozen(model.enc(data["images"]), model.cond))
    trainer.d_optimizer = torch.optim.SGD(d.parameters(), lr=0.0)  # freeze D: isolate the encoder's move
    _step(trainer)
    with torch.no_grad():
        after = measure(frozen(model.enc(data["images"]), model.cond))
    # minmax/grl: the encoder *raises* the camera cross-entropy; oce/ace: it lowers its own target loss
    assert direction * (after - before) > 0


def test_grl_reverses_the_gradient_exactly():
    trainer, model, d, data = _setup("grl", weight=0.7)
    f = model.enc(data["images"])
    ce = L.camera_cross_entropy(d(f, model.cond.detach()), data["camids"])
    (g_w,) = torch.autograd.grad(ce, model.enc.weight)
    trainer.optimizer.step = lambda: None  # inspect the gradients only
    trainer.d_optimizer.step = lambda: None
    _step(trainer)
    assert torch.allclose(model.enc.weight.grad, -0.7 * g_w, atol=1e-6)


def test_unknown_scheme():
    with pytest.raises(ValueError, match="scheme"):
        _setup("maxmin")


@pytest.fixture
def canu_trainer(tiny_trainer):
    return lambda out, *opts: tiny_trainer("configs/synthetic/quick_pseudo.yml", out, "CLUSTERING.K1", "10",
                                           "CLUSTERING.K2", "3", "TEST.EVAL_PERIOD", "100", "MODEL.CANU.ENABLED",
                                           "True", "MODEL.CANU.HIDDEN_DIM", "64", *opts)


def test_tiny_canu_run_and_resume_with_discriminator_state(canu_trainer, tmp_path):
    trainer = canu_trainer(tmp_path, "SOLVER.MAX_EPOCH", "1")
    assert isinstance(trainer._trainer, AdversarialTrainer)
    assert type(trainer.discriminators[0]).__name__ == "ConditionalCameraDiscriminator"
    trainer.train()
    hist = trainer.storage.histories()
    assert "loss_cam_adv" in hist and "cam_disc_acc" in hist
    epochs = epoch_records(tmp_path)["epochs"]  # metrics.json: the epoch's mean of the per-step values
    steps = [v for v, _ in hist["cam_disc_acc"].values()]
    assert len(epochs) == 1 and epochs[0]["disc_acc"] == pytest.approx(sum(steps) / len(steps))
    saved = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert "discriminators" in saved and "d_optimizer" in saved and saved["d_optimizer"]["state"]
    resumed = canu_trainer(tmp_path, "SOLVER.MAX_EPOCH", "2")
    resumed.resume_or_load(resume=True)
    for k, v in resumed.discriminators.state_dict().items():
        assert torch.equal(v, saved["discriminators"][k]), k
    assert resumed.start_epoch == 1


def test_unconditional_ablation_and_single_camera_refusal(canu_trainer, tmp_path):
    from canu_plugin.errors import CanuError
    trainer = canu_trainer(tmp_path, "MODEL.CANU.CONDITIONAL", "False")
    assert type(trainer.discriminators[0]).__name__ == "CameraDiscriminator"
    from canu_plugin.engine.adversarial import install_adversarial
    with pytest.raises(CanuError, match="1 camera"):
        install_adversarial(trainer, trainer.cfg, 1)
