"""Atomic, weights_only checkpoints through fast-reid's Checkpointer."""
import os

import pytest
import torch
from torch import nn

import canu_plugin  # noqa: F401
from canu_plugin.errors import CanuError
from fastreid.utils.checkpoint import Checkpointer


class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.backbone = nn.Linear(3, width)
        self.heads = nn.Linear(width, 2)


def test_save_is_weights_only_loadable(tmp_path):
    opt = torch.optim.SGD(Net().parameters(), lr=0.1)
    ck = Checkpointer(Net(), str(tmp_path), optimizer=opt)
    ck.save("model_0000", epoch=3, metric=1.5)
    data = torch.load(tmp_path / "model_0000.pth", weights_only=True)
    assert data["epoch"] == 3 and "optimizer" in data
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000.pth"
    assert ck.resume_or_load("", resume=True)["epoch"] == 3


def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    ck = Checkpointer(Net(), str(tmp_path))
    ck.save("model_final", epoch=1)
    before = (tmp_path / "model_final.pth").read_bytes()

    def torn_save(obj, f, *a, **k):
        f.write(b"half a file")
        raise KeyboardInterrupt  # killed mid-write
    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        ck.save("model_final", epoch=2)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]


def test_numpy_weights_load(tmp_path):
    net = Net()
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    torch.save({"model": state}, tmp_path / "np.pth")
    other = Net()
    Checkpointer(other).load(str(tmp_path / "np.pth"))
    for k, v in other.state_dict().items():
        assert torch.equal(v, torch.from_numpy(state[k])), k


def test_pickled_objects_are_refused_with_fix(tmp_path):
    torch.save({"model": Net().state_dict(), "obj": Net()}, tmp_path / "obj.pth")
    with pytest.raises(CanuError, match="weights_only=True.*convert"):
        Checkpointer(Net()).load(str(tmp_path / "obj.pth"))


def test_truncated_file_is_reported(tmp_path):
    Checkpointer(Net(), str(tmp_path)).save("m")
    raw = (tmp_path / "m.pth").read_bytes()
    (tmp_path / "m.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CanuError, match="truncated"):
        Checkpointer(Net()).load(str(tmp_path / "m.pth"))


def test_other_backbone_is_refused_but_other_heads_load(tmp_path):
    Checkpointer(Net(width=4), str(tmp_path)).save("m")
    with pytest.raises(CanuError, match="backbone.*another shape"):
        Checkpointer(Net(width=8)).load(str(tmp_path / "m.pth"))
    other_head = Net()
    other_head.heads = nn.Linear(4, 7)  # a source model with another number of classes
    Checkpointer(other_head).load(str(tmp_path / "m.pth"))
    saved = torch.load(tmp_path / "m.pth", weights_only=True)["model"]
    assert torch.equal(other_head.backbone.weight, saved["backbone.weight"])
