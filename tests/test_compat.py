"""Each compat fix, exercised through fast-reid's own code path."""
import os
import subprocess

import pytest
import torch

import canu_plugin
from canu_plugin import compat
from canu_plugin.errors import CanuError
from conftest import launch_watched


def test_apply_is_idempotent():
    assert compat.apply() == []
    assert "torch._six" in compat.applied() or hasattr(torch, "_six")


def test_fast_batch_collator_uses_six_and_mapping():
    from fastreid.data.build import fast_batch_collator
    batch = [{"images": torch.ones(3, 2, 2), "targets": 1, "img_paths": "a.jpg"},
             {"images": torch.zeros(3, 2, 2), "targets": 2, "img_paths": "b.jpg"}]
    out = fast_batch_collator(batch)
    assert out["images"].shape == (2, 3, 2, 2)
    assert out["targets"].tolist() == [1, 2]
    assert out["img_paths"] == ["a.jpg", "b.jpg"]


def test_train_loader_runs_without_cuda(tiny_items):
    from fastreid.data import build_reid_train_loader
    from fastreid.data.common import CommDataset
    from fastreid.data.samplers import NaiveIdentitySampler
    from fastreid.data.transforms import build_transforms
    from fastreid.config import get_cfg
    cfg = get_cfg()
    cfg.INPUT.SIZE_TRAIN = [32, 16]
    ds = CommDataset(tiny_items, build_transforms(cfg, is_train=True), relabel=True)
    loader = build_reid_train_loader(train_set=ds, sampler=NaiveIdentitySampler(ds.img_items, 4, 2),
                                     total_batch_size=4, num_workers=0)
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 3, 32, 16)
    assert batch["images"].device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    loader.shutdown()


def test_reid_evaluator_needs_no_compiler(monkeypatch):
    from fastreid.config import get_cfg
    from fastreid.evaluation import ReidEvaluator

    def no_make(*a, **k):
        raise AssertionError("fast-reid tried to compile at run time")
    monkeypatch.setattr(subprocess, "run", no_make)
    evaluator = ReidEvaluator(get_cfg(), num_query=4)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(16, 8, generator=g)  # 4 queries, 12 gallery (fast-reid needs >= 10)
    pids = torch.tensor([0, 1, 2, 3] * 4)
    cams = torch.tensor([0] * 4 + [1] * 12)
    evaluator.process({"targets": pids, "camids": cams}, feats + 3 * torch.nn.functional.one_hot(pids, 8))
    res = evaluator.evaluate()
    assert res["Rank-1"] == pytest.approx(100.0) and 0 < res["mAP"] <= 100


def _ddp_worker(out_dir):
    import torch.distributed as dist
    from fastreid.engine import defaults
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = defaults.DistributedDataParallel(torch.nn.Linear(4, 1), device_ids=[rank],
                                             broadcast_buffers=False)
    x = torch.full((2, 4), float(rank + 1))
    model(x).sum().backward()
    grad = model.module.weight.grad.clone()
    torch.save({"rank": rank, "world": dist.get_world_size(), "backend": dist.get_backend(),
                "grad": grad}, os.path.join(out_dir, f"r{rank}.pt"))


@pytest.mark.timeout(120)
def test_launch_two_cpu_processes_with_ddp(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this test covers the CPU (gloo) path")
    launch_watched(_ddp_worker, (str(tmp_path),), limit_s=100)
    res = [torch.load(tmp_path / f"r{r}.pt") for r in range(2)]
    assert [r["rank"] for r in res] == [0, 1] and all(r["world"] == 2 for r in res)
    assert res[0]["backend"] == "gloo"
    # DDP all-reduced the gradients: both ranks see the mean of (2*1) and (2*2) per weight
    assert torch.allclose(res[0]["grad"], res[1]["grad"])
    assert torch.allclose(res[0]["grad"], torch.full((1, 4), 3.0))


@pytest.mark.timeout(120)
def test_a_hung_process_fails_the_watched_launch_with_its_stack(tmp_path, capfd):
    import time
    from torch.multiprocessing import ProcessExitedException
    start = time.monotonic()
    with pytest.raises(ProcessExitedException):
        launch_watched(time.sleep, (600,), limit_s=5)
    assert time.monotonic() - start < 60
    assert "Timeout (0:00:05)!" in capfd.readouterr().err  # faulthandler's header, then the stacks


def _seen_group(box):
    import torch.distributed as dist
    box.append((dist.is_initialized(), dist.get_world_size(), dist.get_backend()))


def test_a_finished_worker_destroys_its_process_group():
    """fast-reid's worker leaves the group to the interpreter's exit (where a gloo rank once aborted)."""
    import socket

    import torch.distributed as dist
    from fastreid.utils import comm

    from canu_plugin import distributed
    if torch.cuda.is_available():
        pytest.skip("this test covers the CPU (gloo) path")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = []
    distributed._worker(0, _seen_group, 1, 1, 0, f"tcp://127.0.0.1:{port}", (box,))
    assert box == [(True, 1, "gloo")]  # the main function ran inside the group
    assert not dist.is_initialized() and comm._LOCAL_PROCESS_GROUP is None


def test_corrupt_image_names_the_file(tmp_path, tiny_items):
    from fastreid.data.common import CommDataset
    bad = tmp_path / "0001_c1s1_000999_00.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = CommDataset(tiny_items + [(str(bad), 1, 0)], None, relabel=True)
    with pytest.raises(CanuError, match="0001_c1s1_000999_00.jpg.*corrupt"):
        ds[len(ds) - 1]
    assert canu_plugin.CanuError is CanuError


def test_default_optimizer_updates_the_model():
    """fast-reid's contiguous-parameter optimizer must move the weights after zero_grad/backward/step."""
    from fastreid.config import get_cfg
    from fastreid.solver import build_optimizer
    from fastreid.utils.params import ContiguousParams
    cfg = get_cfg()
    cfg.SOLVER.OPT = "SGD"
    cfg.SOLVER.BASE_LR = 0.1
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    optimizer, params = build_optimizer(cfg, model)
    assert isinstance(params, ContiguousParams)
    before = model[0].weight.detach().clone()
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.ones(4, 3)).sum().backward()
        optimizer.step()
        params.assert_buffer_is_valid()
    assert not torch.allclose(before, model[0].weight)


def test_flip_test_normalises_each_view_once():
    """fast-reid's flip test: (f(x) + f(flip(x))) / 2, each image normalised once (fast-reid 1.4.0's
    in-place preprocessing normalised the flipped images twice)."""
    import torch
    from fastreid.evaluation.evaluator import inference_on_dataset
    from canu_plugin.engine import setup_cfg
    from fastreid.modeling import build_model
    torch.manual_seed(0)
    model = build_model(setup_cfg("configs/synthetic/quick_sup.yml")).eval()
    images = torch.rand(4, 3, 32, 16) * 255

    class Keep:
        def reset(self):
            self.out = None

        def process(self, inputs, outputs):
            self.out = outputs

        def evaluate(self):
            return {}
    class Loader(list):
        dataset = range(4)
    keep = Keep()
    inference_on_dataset(model, Loader([{"images": images.clone(), "targets": torch.zeros(4), "camids": torch.zeros(4)}]),
                         keep, flip_test=True)
    with torch.no_grad():
        expected = (model({"images": images.clone()}) + model({"images": images.flip(dims=[3])})) / 2
    assert torch.allclose(keep.out, expected, atol=1e-5)


def test_progress_line_of_a_one_iteration_run():
    """fast-reid writes the progress line after the last step and again after the epoch; without a
    timer history (< 4 iterations) its ETA estimate divided by zero."""
    from fastreid.utils.events import CommonMetricPrinter, EventStorage
    printer = CommonMetricPrinter(max_iter=2)
    with EventStorage(start_iter=0) as storage:
        storage.epoch = 0  # set by fast-reid's trainer
        storage.put_scalar("total_loss", 1.0)
        printer.write()
        printer.write()  # same iteration: skipped, no ZeroDivisionError
        storage.step()
        storage.put_scalar("total_loss", 0.5)
        printer.write()
    assert printer._last_write[0] == 1
