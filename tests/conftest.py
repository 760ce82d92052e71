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
