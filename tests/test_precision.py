"""SOLVER.AMP for the plugin's steps: autocast for the model's forward (bfloat16 on CPU, float16 +
GradScaler on CUDA), the discriminators in float32, one scaler per optimizer; and the run length
(PSEUDO.ITERS_PER_EPOCH) the scheduler, the printer and the trainer agree on."""
import math

import pytest
import torch
from fastreid.utils.events import EventStorage
from torch import nn

import canu_plugin  # noqa: F401
from canu_plugin.engine.adversarial import AdversarialTrainer
from canu_plugin.engine.precision import PrecisionTrainer
from canu_plugin.engine.schedule import EpochAwareMetricPrinter


class Toy(nn.Module):
    """Records the autocast state of its forward; a conv encoder and an ID head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.cls = nn.Linear(8, 4)
        self.seen = []

    def forward(self, data, return_adv_inputs=False):
        self.seen.append((torch.is_autocast_enabled(data["images"].device.type),
                          torch.get_autocast_dtype(data["images"].device.type)))
        f = self.enc(data["images"])
        loss = {"loss_cls": nn.functional.cross_entropy(self.cls(f), data["targets"])}
        return (loss, [(f, None)]) if return_adv_inputs else loss


class ToyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 3)
        self.seen = []

    def forward(self, f, c=None):
        self.seen.append((torch.is_autocast_enabled(f.device.type), f.dtype))
        return self.net(f)


def _data(device="cpu"):
    """12 images of 4 classes, each class a colour: a learnable batch."""
    g = torch.Generator().manual_seed(1)
    targets = torch.arange(12) % 4
    colours = torch.randn(4, 3, 1, 1, generator=g) * 2
    images = colours[targets] + 0.3 * torch.randn(12, 3, 8, 8, generator=g)
    return {"images": images.to(device), "targets": targets.to(device), "camids": (torch.arange(12) % 3).to(device)}


def _losses(trainer, steps):
    out = []
    with EventStorage(0) as storage:
        for i in range(steps):
            storage.iter = i
            trainer.iter = i
            trainer.run_step()
            out.append(storage.history("total_loss").latest())
    return out


@pytest.mark.parametrize("scheme", ["minmax", "grl"])
def test_cpu_amp_runs_bfloat16_forwards_float32_discriminators_and_learns(scheme):
    model, d = Toy(), ToyD()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    trainer = AdversarialTrainer(model, [_data()] * 30, opt, None, [d], torch.optim.SGD(d.parameters(), lr=0.1),
                                 scheme=scheme, weight=0.1, amp=True)
    assert trainer.amp_dtype == torch.bfloat16 and not trainer.grad_scaler.is_enabled()
    losses = _losses(trainer, 30)
    assert model.seen[0] == (True, torch.bfloat16)  # the model's forward under autocast
    assert set(d.seen) == {(False, torch.float32)}  # the discriminator outside it, on float32 features
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0]


def test_plain_step_with_amp_and_without():
    for amp in (True, False):
        model = Toy()
        trainer = PrecisionTrainer(model, [_data()] * 20, torch.optim.SGD(model.parameters(), lr=0.5), None, amp=amp)
        losses = _losses(trainer, 20)
        assert model.seen[0][0] is amp and (trainer.grad_scaler is None) is (not amp)
        assert losses[-1] < 0.8 * losses[0]


def test_real_runs_honour_solver_amp_on_cpu(tiny_trainer, tmp_path):
    # 64x32 input, not the tiny domains' 32x16: torch 2.14's oneDNN (3.12) returns NaN for a bfloat16 3x3
    # stride-2 convolution of a 4x2 map (layer3.0.conv1 at 32x16) on AMX CPUs in about half the calls
    # (docs/compat.md); at 8x4 and larger it does not
    fast = ["CLUSTERING.K1", "10", "CLUSTERING.K2", "3", "TEST.EVAL_PERIOD", "100", "SOLVER.AMP.ENABLED", "True",
            "SOLVER.AMP.CPU", "True", "SOLVER.MAX_EPOCH", "1", "INPUT.SIZE_TRAIN", "[64, 32]",
            "INPUT.SIZE_TEST", "[64, 32]"]
    canu = tiny_trainer("configs/synthetic/quick_pseudo.yml", tmp_path / "canu", *fast, "MODEL.CANU.ENABLED", "True",
                        "MODEL.CANU.HIDDEN_DIM", "32")
    assert isinstance(canu._trainer, AdversarialTrainer) and canu._trainer.amp_dtype == torch.bfloat16
    canu.train()
    hist = canu.storage.histories()
    assert all(math.isfinite(v) for k in ("loss_cls", "loss_cam_adv", "cam_disc_loss") for v, _ in hist[k].values())
    plain = tiny_trainer("configs/synthetic/quick_pseudo.yml", tmp_path / "plain", *fast)
    assert type(plain._trainer) is PrecisionTrainer and plain._trainer.amp_dtype == torch.bfloat16


class _FirstStepSeen(Exception):
    pass


@pytest.mark.parametrize("cpu_amp, dtype", [(False, torch.float32), (True, torch.bfloat16)])
def test_amp_on_cpu_is_off_unless_asked_for_and_says_so_once(tiny_trainer, tmp_path, log_messages, cpu_amp, dtype):
    """Shipped configs enable SOLVER.AMP.ENABLED; on a CPU it runs float32 (bfloat16 is slower there)
    unless SOLVER.AMP.CPU asks for it; the log says which, once."""
    import canu_plugin.engine.trainer as T
    with log_messages(T.__name__) as messages:
        trainer = tiny_trainer("configs/synthetic/quick_pseudo.yml", tmp_path, "CLUSTERING.K1", "10", "CLUSTERING.K2",
                               "3", "TEST.EVAL_PERIOD", "100", "SOLVER.MAX_EPOCH", "1", "PSEUDO.ITERS_PER_EPOCH", "1",
                               "SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.CPU", str(cpu_amp))
        conv = next(m for m in trainer.unwrapped_model.modules() if isinstance(m, nn.Conv2d))
        seen = []

        def first_training_forward(module, inputs, out):  # (the clustering's feature extraction comes first)
            seen.append((module.training, out.dtype))
            if module.training:  # stop there: bfloat16 numerics on a CPU are not what this test checks
                raise _FirstStepSeen
        conv.register_forward_hook(first_training_forward)
        with pytest.raises(_FirstStepSeen):
            trainer.train()
    assert [d for training, d in seen if training] == [dtype]  # the training step's forward
    said = [m for m in messages if "SOLVER.AMP" in m]
    assert len(said) == 1 and ("bfloat16" in said[0]) and (("SOLVER.AMP.CPU True to use it" in said[0]) is not cpu_amp)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_amp_uses_float16_and_a_grad_scaler_per_optimizer():
    model, d = Toy().cuda(), ToyD().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    trainer = AdversarialTrainer(model, [_data("cuda")] * 30, opt, None, [d], torch.optim.SGD(d.parameters(), lr=0.1),
                                 scheme="minmax", weight=0.1, amp=True)
    assert trainer.amp_dtype == torch.float16 and trainer.grad_scaler.is_enabled()
    assert trainer.d_grad_scaler is not trainer.grad_scaler and trainer.d_grad_scaler.is_enabled()
    losses = _losses(trainer, 30)
    assert model.seen[0] == (True, torch.float16) and set(d.seen) == {(False, torch.float32)}
    assert losses[-1] < 0.8 * losses[0]


def test_scheduler_printer_and_trainer_agree_on_the_run_length(tiny_trainer, tmp_path):
    trainer = tiny_trainer("configs/synthetic/quick_pseudo.yml", tmp_path, "PSEUDO.ITERS_PER_EPOCH", "7",
                           "SOLVER.MAX_EPOCH", "4", "SOLVER.WARMUP_ITERS", "10", "SOLVER.SCHED", "CosineAnnealingLR")
    assert trainer.iters_per_epoch == 7 and trainer.max_iter == 28  # not the loader's len(target) // batch
    assert trainer.scheduler["lr_sched"].T_max == 4 - math.ceil(10 / 7)  # fast-reid's cosine length, real epochs
    assert trainer.scheduler["warmup_sched"].warmup_iters == 10
    printer = next(w for h in trainer._hooks for w in getattr(h, "_writers", []) if isinstance(w, EpochAwareMetricPrinter))
    assert printer.max_iter == printer._max_iter == 28


def test_eta_counts_the_clustering_to_come():
    printer = EpochAwareMetricPrinter(max_iter=40, max_epoch=4, period=1)
    with EventStorage(0) as storage:
        for it in range(10):
            storage.iter = it
            storage.put_scalar("time", 0.5)
        storage.put_scalar("pseudo/extract_s", 3.0, smoothing_hint=False)
        storage.put_scalar("pseudo/cluster_s", 1.0, smoothing_hint=False)
        storage.epoch = 0
        assert printer.clustering_seconds_left(storage) == 3 * 4.0  # epochs 1, 2, 3 cluster again
        printer.write()
        assert storage.history("eta_seconds").latest() == pytest.approx(0.5 * (40 - 9 - 1) + 12.0)
        assert printer._max_iter == 40
        assert EpochAwareMetricPrinter(40, 4, period=2).clustering_seconds_left(storage) == 4.0  # epoch 2 only


def test_cuda_amp_follows_solver_amp_enabled_alone():
    """SOLVER.AMP.CPU only concerns the CPU: on CUDA, SOLVER.AMP.ENABLED decides as before, silently."""
    from canu_plugin.engine import setup_cfg
    from canu_plugin.engine.precision import amp_enabled, log_cpu_amp
    said = []
    for enabled in (True, False):
        cfg = setup_cfg("configs/synthetic/quick_sup.yml", ["SOLVER.AMP.ENABLED", str(enabled)])
        assert cfg.SOLVER.AMP.CPU is False
        assert amp_enabled(cfg, "cuda") is enabled and amp_enabled(cfg, "cuda:1") is enabled
        assert amp_enabled(cfg, "cpu") is False
        log_cpu_amp(cfg, "cuda", said.append)
    assert said == []
