"""Shared fixtures: a tiny image folder and fast-reid configs on CPU."""
import os

import numpy as np
import pytest
from PIL import Image

import canu_plugin  # noqa: F401  (compat fixes first)

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def tiny_items(tmp_path):
    """Eight 32x16 JPEGs of 4 ids x 2 cameras, as fast-reid ``(path, pid, camid)`` items."""
    rng = np.random.default_rng(0)
    items = []
    for pid in range(4):
        for cam in range(2):
            path = tmp_path / f"{pid:04d}_c{cam + 1}s1_{pid * 10 + cam:06d}_00.jpg"
            Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(path)
            items.append((str(path), pid, cam))
    return items

TINY_DOMAIN = dict(num_train_ids=16, num_test_ids=12, images_per_camera=(2, 4), num_distractors=4,
                   image_size=(32, 16))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """Tiny SynthA and SynthB domains (Market layout, 32x16 images) shared by the whole session."""
    from canu_plugin.data.synthetic import generate_all
    root = tmp_path_factory.mktemp("datasets")
    generate_all(str(root), seed=0, **TINY_DOMAIN)
    return str(root)


def _point_loaders_at(root, monkeypatch):
    """Point fast-reid's loaders (and child processes) at ``root`` for one test."""
    from canu_plugin.engine import set_datasets_root
    import fastreid.data.build as build
    monkeypatch.setattr(build, "_root", build._root)
    monkeypatch.setenv("FASTREID_DATASETS", root)
    set_datasets_root(root)
    return root


@pytest.fixture
def use_synth_root(synth_root, monkeypatch):
    """Point fast-reid's loaders at the tiny domains for this test."""
    return _point_loaders_at(synth_root, monkeypatch)


TINY_VIDEO_DOMAIN = dict(num_train_ids=12, num_test_ids=8, tracklets_per_camera=(1, 2), frames_per_tracklet=(3, 6),
                         num_distractors=2, num_junk=2, image_size=(32, 16))


@pytest.fixture(scope="session")
def video_root(tmp_path_factory):
    """Tiny SynthVidA and SynthVidB tracklet domains (MARS layout, 32x16 frames) for the whole session."""
    from canu_plugin.data.video.synthetic_video import generate_video_all
    root = tmp_path_factory.mktemp("video_datasets")
    generate_video_all(str(root), seed=0, **TINY_VIDEO_DOMAIN)
    return str(root)


@pytest.fixture
def use_video_root(video_root, monkeypatch):
    """Point fast-reid's loaders at the tiny tracklet domains for this test."""
    return _point_loaders_at(video_root, monkeypatch)


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory):
    """Layout-faithful fakes of every supported real release (canu_plugin.data.fakes; MSMT17 as V2)."""
    from canu_plugin.data.fakes import write_fakes
    return write_fakes(str(tmp_path_factory.mktemp("fake_releases")))


@pytest.fixture
def use_fake_root(fake_root, monkeypatch):
    """Point fast-reid's loaders at the fakes of the real releases for this test."""
    return _point_loaders_at(fake_root, monkeypatch)


@pytest.fixture
def pseudo_of():
    """Factory of :class:`PseudoLabels` for model-level tests: ``pseudo_of(centroids (K, D),
    labels=None, view_labels=None)`` (labels default to one sample per cluster)."""
    import torch
    from canu_plugin.data.pseudo_labels import PseudoLabels

    def make(centroids, labels=None, view_labels=None):
        k = centroids.shape[0]
        labels = np.arange(k) if labels is None else np.asarray(labels)
        return PseudoLabels(labels=labels, centroids=torch.as_tensor(centroids), epoch=0, view_labels=view_labels)
    return make


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST_CLUSTERING = ["CLUSTERING.K1", "10", "CLUSTERING.K2", "3", "TEST.EVAL_PERIOD", "100"]


@pytest.fixture
def tiny_trainer(use_synth_root):
    """Factory of real (tiny) trainers on the tiny synthetic domains, on CPU:
    ``tiny_trainer(config, out, *opts)`` -> :class:`canu_plugin.engine.Trainer` built from
    ``config`` (a path relative to the repository, e.g. "configs/synthetic/quick_pseudo.yml") with
    the ``KEY VALUE`` overrides ``opts``, writing to ``out``."""
    from canu_plugin.engine import Trainer, setup_cfg

    def make(config, out, *opts):
        cfg = setup_cfg(os.path.join(REPO, config), [*opts, "OUTPUT_DIR", str(out)])
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        return Trainer(cfg)
    return make


def _watched(limit_s, fn, *args):
    """One spawned process of :func:`launch_watched`: ``fn(*args)`` under a watchdog."""
    import faulthandler
    faulthandler.dump_traceback_later(limit_s, exit=True)  # stays armed through the group's teardown
    fn(*args)


def launch_watched(fn, args, nprocs=2, limit_s=240):
    """fast-reid's ``launch`` of ``fn(*args)`` on ``nprocs`` processes, each of which prints every
    thread's stack and exits if it is still running after ``limit_s`` seconds. A hung process then
    fails the test with its stacks, and spawn ends the others; without it, pytest's timeout would
    leave the processes alive and the interpreter would wait for them at exit (CI hangs)."""
    from fastreid.engine import launch
    launch(_watched, nprocs, dist_url="auto", args=(limit_s, fn, *args))


def kill_and_resume(make, root, checkpoint="model_0000.pth"):
    """Train ``make(root / "full")`` to the end, copy it to ``root / "cut"`` as if killed after
    ``checkpoint`` (its ``last_checkpoint``), resume it there with ``make(root / "cut")`` and finish.

    Args:
        make: ``make(out)`` -> a :class:`canu_plugin.engine.Trainer` writing to ``out``.
    Returns:
        (uninterrupted, resumed): the two ``model_final.pth`` checkpoints, loaded.
    """
    import shutil

    import torch
    full, cut = root / "full", root / "cut"
    make(full).train()
    shutil.copytree(full, cut)
    (cut / "last_checkpoint").write_text(checkpoint)
    resumed = make(cut)
    resumed.resume_or_load(resume=True)
    assert resumed.start_epoch == 1
    resumed.train()
    return tuple(torch.load(d / "model_final.pth", weights_only=True) for d in (full, cut))


@pytest.fixture
def log_messages():
    """``with log_messages("canu_plugin.x") as messages:`` collects that logger's messages (INFO and up)
    into the list ``messages``, whatever its propagation (fast-reid's setup_logger turns it off)."""
    import contextlib
    import logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    @contextlib.contextmanager
    def collect(name):
        logger, handler = logging.getLogger(name), Collect()
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            yield handler.messages
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
    return collect


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one; `make gpu-check` runs them)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip where torch sees no CUDA device."""
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def bench_record(method, seed, mAP, family="clustering", pseudo=(), label=None):
    """A minimal run record of the benchmark (what the report and the claims read) with a final mAP."""
    return {"method": method, "label": label or method, "seed": seed, "family": family, "target": "SynthB",
            "final": {"mAP": mAP}, "pseudo": list(pseudo), "epochs": [], "plots": {}}
