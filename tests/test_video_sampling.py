"""Frame sampling (torchreid's random / evenly / all), clip datasets and the inference frame list."""
import numpy as np
import pytest
import torch
import torchvision.transforms as T
from fastreid.data.datasets import DATASET_REGISTRY
from PIL import Image

from canu_plugin.data.intra_camera import PART_KEY, intra_camera_items
from canu_plugin.data.video.clips import (TRACKLET_KEY, TrackletFrames, VideoClipDataset, VideoIntraCameraDataset,
                                          frame_indices, transform_clip)
from canu_plugin.errors import CanuError


def torchreid_evenly(n, T):
    """torchreid's VideoDataset 'evenly' branch, written out as its reference."""
    if n >= T:
        n -= n % T
        return np.arange(0, n, n / T).astype(int)
    return np.concatenate([np.arange(0, n), np.ones(T - n).astype(np.int32) * (n - 1)])


@pytest.mark.parametrize("n", [1, 3, 4, 7, 8, 15, 33])
@pytest.mark.parametrize("T", [1, 4, 8])
def test_evenly_matches_torchreid_and_all_takes_every_frame(n, T):
    assert frame_indices(n, T, "evenly").tolist() == torchreid_evenly(n, T).tolist()
    assert frame_indices(n, T, "all").tolist() == list(range(n))


def test_random_is_sorted_distinct_when_possible_and_replicates_short_tracklets():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        idx = frame_indices(10, 4, "random", rng)
        assert len(idx) == 4 and list(idx) == sorted(set(idx)) and idx.min() >= 0 and idx.max() < 10
        seen.update(idx.tolist())
    assert seen == set(range(10))  # every frame can be drawn
    short = frame_indices(2, 5, "random", rng)
    assert len(short) == 5 and set(short.tolist()) <= {0, 1} and list(short) == sorted(short)
    with pytest.raises(CanuError, match="frame sampling"):
        frame_indices(5, 4, "dense")


def _frames(n=5):
    """n distinct, asymmetric 32x16 PIL frames."""
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)) for _ in range(n)]


def test_consistent_augmentation_draws_one_augmentation_per_clip():
    aug = T.Compose([T.RandomHorizontalFlip(0.5), T.Pad(4), T.RandomCrop((32, 16)), T.ToTensor()])
    frames = _frames(1) * 5  # one frame, five times: a consistent clip has five equal outputs
    torch.manual_seed(0)
    clips = [transform_clip(frames, aug, consistent=True) for _ in range(10)]
    assert all(c.shape == (5, 3, 32, 16) and all(torch.equal(c[0], f) for f in c) for c in clips)
    assert len({round(c[0].sum().item(), 3) for c in clips}) > 1  # each clip draws its own augmentation
    loose = [transform_clip(frames, aug, consistent=False) for _ in range(10)]
    assert any(not all(torch.equal(c[0], f) for f in c) for c in loose)


def test_clip_dataset_returns_t_frames_of_one_tracklet(video_root):
    data = DATASET_REGISTRY.get("SynthVidA")(root=video_root)
    ds = VideoClipDataset(data.train, T.Compose([T.Resize((32, 16)), T.ToTensor()]), relabel=True, seq_len=3,
                          sample="evenly")
    item = ds[0]
    assert item["images"].shape == (3, 3, 32, 16) and item["img_paths"] == data.train[0][0][0]
    assert item["targets"] == ds.pid_dict[data.train[0][1]] and item["camids"] == ds.cam_dict[data.train[0][2]]
    first = T.ToTensor()(Image.open(data.train[0][0][0]).convert("RGB"))
    assert torch.equal(item["images"][0], first)  # evenly starts at the first frame
    with pytest.raises(CanuError, match="cannot be batched"):
        VideoClipDataset(data.train, None, seq_len=3, sample="all")


def test_intra_camera_labels_per_tracklet_and_acan_parts(video_root):
    data = DATASET_REGISTRY.get("SynthVidA")(root=video_root)
    items, info = intra_camera_items(data.train)
    by_label = {}
    for paths, label, cam in items:
        by_label.setdefault(label, set()).add((cam, paths[0].split("/")[-1][:4]))
    assert all(len(v) == 1 for v in by_label.values())  # one label = one (camera, identity)
    assert len(by_label) == info["num_labels"] < len(items)  # several tracklets share a label
    ds = VideoIntraCameraDataset(items, T.ToTensor(), cameras=info["cameras"], seq_len=2)
    out = ds[(3, 1)]
    assert out["images"].shape[:2] == (2, 3) and out[PART_KEY] == 1 and out["targets"] == items[3][1]


def test_tracklet_frames_list_every_frame_in_tracklet_order(video_root):
    data = DATASET_REGISTRY.get("SynthVidB")(root=video_root)
    items = data.query + data.gallery
    frames = TrackletFrames(items, T.ToTensor())
    assert len(frames) == sum(len(p) for p, _, _ in items) and frames.num_tracklets == len(items)
    assert [frames[j][TRACKLET_KEY] for j in range(len(frames))] == sorted(
        t for t, (p, _, _) in enumerate(items) for _ in p)
    last = frames[len(frames) - 1]
    assert (last["targets"], last["camids"], last["img_paths"]) == (items[-1][1], items[-1][2], items[-1][0][-1])
    two = TrackletFrames(items, T.ToTensor(), frames=2)
    assert len(two) == 2 * len(items)
