"""canu-export: a trained PseudoBaseline / MMT / SSG / ACAN checkpoint as a plain fast-reid Baseline
that fast-reid alone loads, with the same features, and that exports to ONNX."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastreid.utils.checkpoint import Checkpointer

from canu_plugin.cli import export as export_cli
from canu_plugin.data.pseudo_labels import PseudoLabels
from canu_plugin.engine import Trainer, setup_cfg
from canu_plugin.errors import CanuError
from canu_plugin.export import baseline_state, export_baseline, export_onnx, load_baseline
from canu_plugin.modeling.contract import PseudoLabelModel

TINY = ["MODEL.DEVICE", "cpu", "INPUT.SIZE_TRAIN", "[32,16]", "INPUT.SIZE_TEST", "[32,16]"]
CONFIGS = {"pseudo": "configs/synthetic/quick_pseudo.yml", "mmt": "configs/synthetic/quick_mmt.yml",
           "ssg": "configs/synthetic/quick_ssg.yml", "acan": "configs/synthetic/acan_triplet.yml"}


def _trained(tmp_path, kind):
    """A model of ``kind`` with trained-looking weights (BN statistics too) and 7 pseudo-identities,
    saved by fast-reid's Checkpointer with a discriminator beside it, as a CANU run leaves it."""
    torch.manual_seed(0)
    cfg = setup_cfg(CONFIGS[kind], TINY)
    model = Trainer.build_model(cfg)
    if isinstance(model, PseudoLabelModel):
        centroids = torch.randn(7, model.adversarial_dims[0][1])
        views = np.zeros((7, 2), np.int64) if kind == "ssg" else None  # SSG: upper / lower labels too
        model.install_clusters(PseudoLabels(labels=np.arange(7), centroids=centroids, epoch=0, view_labels=views))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.1 * torch.randn_like(p))
    _calibrate_batchnorm(model, torch.rand(16, 3, 32, 16) * 255)
    disc = torch.nn.Linear(4, 2)
    Checkpointer(model, str(tmp_path), discriminators=disc).save("model_final", epoch=3)
    return cfg, model.eval(), str(tmp_path / "model_final.pth")


def _calibrate_batchnorm(model, x):
    """BatchNorm statistics of a train-mode pass, as training leaves them: features of a realistic
    scale (fresh statistics let activations grow to ~1e4 through the ResNet)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass sets the statistics of that batch
    model.train()
    with torch.no_grad():
        for net in [m for m in model.modules() if hasattr(m, "backbone") and hasattr(m, "preprocess_image")]:
            net.heads.bottleneck(net.heads.pool_layer(net.backbone(net.preprocess_image(x.clone()))))
    model.eval()


def _features(model, x):
    with torch.no_grad():
        return model(x.clone())  # fast-reid's preprocessing normalises its input in place


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.rand(5, 3, 32, 16) * 255


@pytest.mark.parametrize("kind", ["pseudo", "acan"])
def test_single_network_models_export_with_the_same_features(tmp_path, kind, images):
    cfg, model, ckpt = _trained(tmp_path, kind)
    config_file, weights = export_baseline(cfg, ckpt, str(tmp_path / "export"))
    exported, plain_cfg = load_baseline(config_file)
    assert type(exported).__name__ == "Baseline" and type(exported.heads).__name__ == "EmbeddingHead"
    assert torch.allclose(_features(exported, images), _features(model, images), atol=1e-5)
    state = torch.load(weights, weights_only=True)["model"]
    assert state["heads.weight"].shape[0] == 0 and not any(k.startswith("disc") for k in state)
    text = open(config_file).read()
    assert "PSEUDO" not in text and "CANU" not in text and "ACAN" not in text and "META_ARCHITECTURE: Baseline" in text
    assert plain_cfg.MODEL.WEIGHTS == os.path.abspath(weights) and not plain_cfg.MODEL.BACKBONE.PRETRAIN


def test_mmt_exports_one_network(tmp_path, images):
    cfg, model, ckpt = _trained(tmp_path, "mmt")
    for net in ("teacher1", "net2"):
        config_file, _ = export_baseline(cfg, ckpt, str(tmp_path / net), mmt_net=net)
        exported, _ = load_baseline(config_file)
        one = getattr(model, net)
        with torch.no_grad():
            expected = one.heads(one.backbone(one.preprocess_image(images.clone())))
        assert torch.allclose(_features(exported, images), expected, atol=1e-5)
    with pytest.raises(CanuError, match="teacher1, teacher2, net1, net2"):
        export_baseline(cfg, ckpt, str(tmp_path / "x"), mmt_net="student")


def test_ssg_is_refused_unless_the_full_body_branch_is_asked_for(tmp_path, images):
    cfg, model, ckpt = _trained(tmp_path, "ssg")
    with pytest.raises(CanuError, match="concatenation.*--ssg-full-body"):
        export_baseline(cfg, ckpt, str(tmp_path / "refused"))
    config_file, _ = export_baseline(cfg, ckpt, str(tmp_path / "full"), ssg_full_body=True)
    exported, _ = load_baseline(config_file)
    full = _features(exported, images)
    ssg = _features(model, images)  # (B, 3D): full | upper | lower, each normalised
    assert torch.allclose(F.normalize(full, dim=1), ssg[:, : full.size(1)], atol=1e-5)


def test_a_checkpoint_of_another_architecture_is_refused():
    with pytest.raises(CanuError, match="no backbone tensors"):
        baseline_state("MMT", {"backbone.conv1.weight": torch.zeros(1)})
    with pytest.raises(CanuError, match="cannot export"):
        baseline_state("Unknown", {})


def test_fastreid_alone_loads_the_export(tmp_path, images):
    """A deployment without the plugin: fast-reid's get_cfg, build_model and Checkpointer.load."""
    cfg, model, ckpt = _trained(tmp_path, "pseudo")
    config_file, _ = export_baseline(cfg, ckpt, str(tmp_path / "export"))
    np.save(tmp_path / "x.npy", images.numpy())
    code = ("import sys, numpy as np, torch\n"
            "from fastreid.config import get_cfg\nfrom fastreid.modeling import build_model\n"
            "from fastreid.utils.checkpoint import Checkpointer\n"
            "cfg = get_cfg(); cfg.merge_from_file(sys.argv[1])\n"
            "model = build_model(cfg); Checkpointer(model).load(cfg.MODEL.WEIGHTS); model.eval()\n"
            "x = torch.from_numpy(np.load(sys.argv[2]))\n"
            "with torch.no_grad(): np.save(sys.argv[3], model(x).numpy())\n"
            "assert not any(m.startswith('canu_plugin') for m in sys.modules), 'plugin imported'\n")
    proc = subprocess.run([sys.executable, "-c", code, config_file, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.allclose(np.load(tmp_path / "y.npy"), _features(model, images).numpy(), atol=1e-5)


def test_onnx_output_equals_pytorch(tmp_path, images):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install canu-plugin[test])")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install canu-plugin[test])")
    cfg, model, ckpt = _trained(tmp_path, "pseudo")
    exported, plain_cfg = load_baseline(export_baseline(cfg, ckpt, str(tmp_path / "export"))[0])
    path = export_onnx(exported, plain_cfg, str(tmp_path / "model.onnx"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = session.run(["features"], {"images": images.numpy()})[0]  # batch 5: the batch axis is dynamic
    expected = _features(model, images).numpy()
    assert out.shape == (5, 512) and 0.1 < np.abs(expected).mean() < 100  # features of a realistic scale
    assert np.abs(out - expected).max() < 1e-4


def test_command_line(tmp_path, capsys):
    _, _, ckpt = _trained(tmp_path, "ssg")
    args = ["--config-file", CONFIGS["ssg"], "--weights", ckpt, "--output", str(tmp_path / "out"), *TINY]
    with pytest.raises(SystemExit) as e:
        export_cli.main(args)
    assert e.value.code == 2 and capsys.readouterr().err.startswith("error: an SSG model's test feature")
    assert export_cli.main(args[:6] + ["--ssg-full-body", *TINY]) == 0
    assert "fast-reid Baseline (SSG -> Baseline)" in capsys.readouterr().out
    assert (tmp_path / "out" / "model.pth").is_file() and (tmp_path / "out" / "config.yaml").is_file()
