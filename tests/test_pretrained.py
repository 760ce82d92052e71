"""ImageNet weights offline: fast-reid's cache without gdown, PRETRAIN_PATH (plain file or fast-reid
checkpoint), and errors that name the file to fetch and where to put it."""
import importlib.util
import os
import types

import pytest
import torch
from fastreid.modeling.backbones import build_backbone

from canu_plugin import pretrained
from canu_plugin.engine import setup_cfg
from canu_plugin.errors import CanuError

R18_FILE = "resnet18-5c106cde.pth"


def _cfg(*opts):
    return setup_cfg("configs/synthetic/quick_sup.yml", ["MODEL.BACKBONE.PRETRAIN", "True", *opts])


def _imagenet_like_state():
    """A ResNet-18 state dict in torchvision's names (what the ImageNet file holds), random values."""
    cfg = _cfg("MODEL.BACKBONE.PRETRAIN", "False")
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in build_backbone(cfg).state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # torchvision's classifier: not part of the backbone
    return state


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "checkpoints"


@pytest.fixture
def no_gdown(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gdown" else real(name, *a))


def test_missing_file_without_gdown_names_file_url_and_place(torch_home, no_gdown):
    with pytest.raises(CanuError) as e:
        build_backbone(_cfg())
    msg = str(e.value)
    assert f"https://download.pytorch.org/models/{R18_FILE}" in msg
    assert str(torch_home / R18_FILE) in msg and "PRETRAIN_PATH" in msg and "gdown is not installed" in msg


def test_ibn_backbone_names_the_ibn_file(torch_home, no_gdown):
    with pytest.raises(CanuError, match=r"resnet50_ibn_a-d9d0bb7b\.pth"):
        build_backbone(_cfg("MODEL.BACKBONE.DEPTH", "50x", "MODEL.BACKBONE.WITH_IBN", "True",
                            "MODEL.BACKBONE.FEAT_DIM", "2048"))


def test_cached_file_loads_without_gdown(torch_home, no_gdown):
    state = _imagenet_like_state()
    torch_home.mkdir(parents=True)
    torch.save(state, torch_home / R18_FILE)
    backbone = build_backbone(_cfg())
    assert torch.equal(backbone.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


def test_failed_download_is_one_clear_error(torch_home, monkeypatch):
    real = importlib.util.find_spec  # gdown "installed", the network down
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "gdown" else real(name, *a))
    def download(key):
        (torch_home / R18_FILE).parent.mkdir(parents=True, exist_ok=True)
        (torch_home / R18_FILE).write_bytes(b"")  # what an interrupted gdown leaves
        raise OSError("Name or service not known")
    module = types.SimpleNamespace(model_urls={"18x": f"https://download.pytorch.org/models/{R18_FILE}"},
                                   init_pretrained_weights=download)
    pretrained.offline_download(module)
    with pytest.raises(CanuError, match="download failed: OSError"):
        module.init_pretrained_weights("18x")
    assert not (torch_home / R18_FILE).exists()  # the empty file is not taken for a cached one next time


def test_pretrain_path_plain_or_fastreid_checkpoint(tmp_path):
    state = _imagenet_like_state()
    torch.save(state, tmp_path / "imagenet.pth")
    plain = build_backbone(_cfg("MODEL.BACKBONE.PRETRAIN_PATH", str(tmp_path / "imagenet.pth")))
    assert torch.equal(plain.state_dict()["conv1.weight"], state["conv1.weight"])
    zoo = {"model": {"backbone." + k: v for k, v in state.items()}, "iteration": 10}
    zoo["model"]["heads.weight"] = torch.zeros(751, 512)
    torch.save(zoo, tmp_path / "zoo.pth")
    from_zoo = build_backbone(_cfg("MODEL.BACKBONE.PRETRAIN_PATH", str(tmp_path / "zoo.pth")))
    assert torch.equal(from_zoo.state_dict()["conv1.weight"], state["conv1.weight"])


def test_pretrain_path_of_another_network_is_refused(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CanuError, match="none of its 1 tensors fits this backbone"):
        build_backbone(_cfg("MODEL.BACKBONE.PRETRAIN_PATH", str(tmp_path / "other.pth")))


def test_missing_pretrain_path_names_the_file_for_the_backbone(tmp_path):
    with pytest.raises(CanuError) as e:
        _cfg("MODEL.BACKBONE.PRETRAIN_PATH", str(tmp_path / "nope.pth"))
    assert str(tmp_path / "nope.pth") in str(e.value) and R18_FILE in str(e.value)
    assert os.path.basename(pretrained.imagenet_url(_cfg("MODEL.BACKBONE.PRETRAIN", "False"))) == R18_FILE
