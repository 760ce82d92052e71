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
