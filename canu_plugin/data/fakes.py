"""Layout-faithful fakes of the real re-ID releases, for tests and for trying the tools without the data.

Each writer puts, under ``root``, the folders, file names and list / info files that the release
has and that our loaders (fast-reid's Market1501 / DukeMTMC / MSMT17, canu_plugin.data.video's
MARS / DukeMTMCVideoReID / DukeMTMCSITracklet) read, with a few identities and tiny JPEGs (one
flat colour per identity, a camera tint and noise, so that even an untrained network separates the
identities)::

    Market1501          Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/
                        0002_c1s1_000451_03.jpg   (gallery also 0000_... distractors, -1_... junk)
    DukeMTMC            DukeMTMC-reID/{bounding_box_train,query,bounding_box_test}/0005_c2_f0046182.jpg
    MSMT17 (V1 | V2)    MSMT17_V1/{train,test}/<pid>/0000_000_01_0303morning_0015_0.jpg + list_{train,
                        val,query,gallery}.txt ("<pid>/<file> <pid>" lines; V2: mask_train_v2, mask_test_v2)
    MARS                mars/{bbox_train,bbox_test}/<pid>/0001C1T0001F001.jpg + info/ (name lists, .mat)
    DukeMTMCVideoReID   dukemtmc-vidreid/DukeMTMC-VideoReID/{train,query,gallery}/<pid>/<tid>/
                        0001_C6_F0001_X30823.jpg
    DukeMTMCSITracklet  DukeMTMC-SI-Tracklet/{train,query,gallery}/<pid>/<tracklet>/c6_030823.jpg

MSMT17 V1 and V2 cannot share a root (fast-reid takes MSMT17_V1 when both exist). Sizes:
:data:`TRAIN_IDS` training identities, :data:`TEST_IDS` test identities, :data:`CAMERAS` cameras.
"""
import os

import numpy as np
from PIL import Image

from canu_plugin.data.video.mars import frame_name as mars_frame_name
from canu_plugin.data.video.mars import pid_folder
from canu_plugin.data.video.synthetic_video import write_mars_info

TRAIN_IDS = 8      # identities 1..8 (MSMT17: 0..7)
TEST_IDS = 4       # identities 9..12 (MSMT17: 0..3 of the test folder)
CAMERAS = 3        # cameras 1..3 (every dataset's cameras start at 1)
IMAGE_SIZE = (32, 16)
FRAMES = 3         # frames per tracklet


def _image(path, pid, cam, index):
    """Write a tiny JPEG of identity ``pid`` seen by camera ``cam`` (deterministic)."""
    rng = np.random.default_rng([abs(pid) + 7, cam, index])
    colour = np.array([(pid * 67) % 256, (pid * 151 + 80) % 256, (pid * 29 + 160) % 256], dtype=float)
    img = colour + 12 * cam + rng.normal(0, 8, (*IMAGE_SIZE, 3))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)


def _samples(pids, per_camera):
    """(pid, cam 1-based, index) for every identity, camera and ``per_camera`` sample."""
    return [(pid, cam, i) for pid in pids for cam in range(1, CAMERAS + 1) for i in range(per_camera)]


def _image_splits(first_test):
    """{split: [(pid, cam, index)]} of a Market-like release: train 2 per camera, query 1 per camera
    of the test ids, gallery 2 per camera plus two distractors (pid 0) and two junk images (pid -1)."""
    train_ids = range(1, TRAIN_IDS + 1)
    test_ids = range(first_test, first_test + TEST_IDS)
    gallery = [(pid, cam, i + 1) for pid, cam, i in _samples(test_ids, 2)] + [(0, 1, 0), (0, 2, 0), (-1, 1, 0),
                                                                              (-1, 2, 1)]
    return {"train": _samples(train_ids, 2), "query": _samples(test_ids, 1), "gallery": gallery}


def write_market1501(root):
    """Market-1501 (``Market-1501-v15.09.15``): ``<pid>_c<cam>s<seq>_<frame>_<box>.jpg``."""
    base = os.path.join(root, "Market-1501-v15.09.15")
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for split, samples in _image_splits(TRAIN_IDS + 1).items():
        for pid, cam, i in samples:
            name = f"{pid:04d}_c{cam}s1_{1000 * (i + 1) + pid % 100:06d}_{i:02d}.jpg".replace("-001", "-1")
            _image(os.path.join(base, folders[split], name), pid, cam, i)
    return base


def write_dukemtmc(root):
    """DukeMTMC-reID: ``<pid>_c<cam>_f<frame>.jpg`` (no junk images; distractors in the gallery)."""
    base = os.path.join(root, "DukeMTMC-reID")
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for split, samples in _image_splits(TRAIN_IDS + 1).items():
        for pid, cam, i in samples:
            if pid > 0:
                _image(os.path.join(base, folders[split], f"{pid:04d}_c{cam}_f{46000 + 100 * pid + i:07d}.jpg"),
                       pid, cam, i)
    return base


def write_msmt17(root, version="MSMT17_V2"):
    """MSMT17 ``version`` (``MSMT17_V1`` or ``MSMT17_V2``): per-identity folders of
    ``<pid>_<index>_<cam 2 digits>_<date><time>_<frame>_<n>.jpg`` and the four list files, whose lines
    are ``<pid>/<file> <pid>``; train and test identities both count from 0, as released."""
    train_dir, test_dir = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}[version]
    base = os.path.join(root, version)
    train = _samples(range(TRAIN_IDS), 2)
    lists = {"list_train.txt": (train_dir, train[: len(train) - CAMERAS]),  # the last 3 images: validation
             "list_val.txt": (train_dir, train[len(train) - CAMERAS:]),
             "list_query.txt": (test_dir, _samples(range(TEST_IDS), 1)),
             "list_gallery.txt": (test_dir, [(p, c, i + 1) for p, c, i in _samples(range(TEST_IDS), 2)])}
    for list_name, (folder, samples) in lists.items():
        lines = []
        for k, (pid, cam, i) in enumerate(samples):
            rel = f"{pid:04d}/{pid:04d}_{k:03d}_{cam:02d}_0303morning_{15 + k:04d}_{i}.jpg"
            _image(os.path.join(base, folder, rel), pid + (100 if folder == test_dir else 0), cam, i)
            lines.append(f"{rel} {pid}\n")
        with open(os.path.join(base, list_name), "w") as f:
            f.write("".join(lines))
    return base


def _tracklet_splits():
    """{split: [(pid, cam, tracklet number)]}: train 1 tracklet per identity and camera, query one of
    the test ids' in camera 1, gallery the test ids' in the other cameras plus a distractor (pid 0)."""
    test_ids = range(TRAIN_IDS + 1, TRAIN_IDS + TEST_IDS + 1)
    return {"train": _samples(range(1, TRAIN_IDS + 1), 1),
            "query": [(pid, 1, 0) for pid in test_ids],
            "gallery": [(pid, cam, 0) for pid in test_ids for cam in range(2, CAMERAS + 1)] + [(0, 1, 1)]}


def write_mars(root):
    """MARS: ``bbox_{train,test}/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg`` and ``info/`` (the name
    lists, ``tracks_{train,test}_info.mat`` rows [start, end, pid, cam], ``query_IDX.mat``); the test
    set also holds one junk tracklet (pid -1), which the loader drops."""
    base = os.path.join(root, "mars")
    splits = _tracklet_splits()
    plan = {"train": splits["train"], "test": splits["query"] + splits["gallery"] + [(-1, 2, 2)]}
    names, tracks = {"train": [], "test": []}, {"train": [], "test": []}
    for split, rows in plan.items():
        for pid, cam, t in rows:
            start = len(names[split]) + 1
            for f in range(FRAMES):
                name = mars_frame_name(pid, cam, t + 1, f + 1)
                _image(os.path.join(base, f"bbox_{split}", pid_folder(pid), name), pid, cam, f)
                names[split].append(name)
            tracks[split].append([start, len(names[split]), pid, cam])
    write_mars_info(os.path.join(base, "info"), names, tracks, list(range(1, len(splits["query"]) + 1)))
    return base


def _write_duke_tracklets(base, frame_file):
    """``{train,query,gallery}/<pid>/<tracklet>/<frame_file(pid, cam, f)>`` of :func:`_tracklet_splits`."""
    for split, rows in _tracklet_splits().items():
        for n, (pid, cam, t) in enumerate(rows):
            for f in range(FRAMES):
                path = os.path.join(base, split, f"{pid:04d}", frame_file.tracklet(n, cam), frame_file(pid, cam, f))
                _image(path, pid, cam, f)
    return base


class _VideoReIDFrame:
    """DukeMTMC-VideoReID names: tracklet folders ``0001``.., frames ``<pid>_C<cam>_F<frame>_X<n>.jpg``."""
    @staticmethod
    def tracklet(n, cam):
        return f"{n + 1:04d}"

    def __call__(self, pid, cam, f):
        return f"{pid:04d}_C{cam}_F{f + 1:04d}_X{30000 + f:05d}.jpg"


class _SITrackletFrame:
    """DukeMTMC-SI-Tracklet names: frames ``c<cam>_<frame in the camera's video, 6 digits>.jpg``
    (the tracklet folder's name is not read)."""
    @staticmethod
    def tracklet(n, cam):
        return f"tkl{n + 1:04d}"

    def __call__(self, pid, cam, f):
        return f"c{cam}_{30000 + 50 * pid + f:06d}.jpg"


def write_dukemtmc_videoreid(root):
    """DukeMTMC-VideoReID under ``dukemtmc-vidreid/DukeMTMC-VideoReID`` (torchreid's folder)."""
    return _write_duke_tracklets(os.path.join(root, "dukemtmc-vidreid", "DukeMTMC-VideoReID"), _VideoReIDFrame())


def write_dukemtmc_si_tracklet(root):
    """DukeMTMC-SI-Tracklet under ``DukeMTMC-SI-Tracklet`` (the release's folder)."""
    return _write_duke_tracklets(os.path.join(root, "DukeMTMC-SI-Tracklet"), _SITrackletFrame())


def _fake_release(train, query, gallery):
    from canu_plugin.data.check import Release
    return Release({"train": train, "query": query, "gallery": gallery}, CAMERAS, "canu_plugin.data.fakes")


# What the loaders read from these fakes, in canu-check-data's terms (tests compare against it).
FAKE_FIGURES = {
    "Market1501": _fake_release((8, 48), (4, 12), (5, 26)),        # gallery: + pid 0 distractors, junk dropped
    "DukeMTMC": _fake_release((8, 48), (4, 12), (4, 24)),
    "MSMT17": _fake_release((8, 45), (4, 12), (4, 24)),            # train: list_train only
    "MSMT17TrainVal": _fake_release((8, 48), (4, 12), (4, 24)),    # train: list_train 45 + list_val 3
    "MARS": _fake_release((8, 24), (4, 4), (5, 9)),                # gallery: + a distractor, junk dropped
    "DukeMTMCVideoReID": _fake_release((8, 24), (4, 4), (5, 9)),
    "DukeMTMCSITracklet": _fake_release((8, 24), (4, 4), (5, 9)),
}

WRITERS = {"Market1501": write_market1501, "DukeMTMC": write_dukemtmc, "MSMT17": write_msmt17,
           "MSMT17TrainVal": write_msmt17, "MARS": write_mars,
           "DukeMTMCVideoReID": write_dukemtmc_videoreid, "DukeMTMCSITracklet": write_dukemtmc_si_tracklet}


def write_fakes(root, names=tuple(WRITERS), msmt_version="MSMT17_V2"):
    """Write the fakes of ``names`` (registered dataset names) under ``root`` (MSMT17 and MSMT17TrainVal
    share one release folder, written once); returns ``root``."""
    written = set()
    for name in names:
        writer = WRITERS[name]
        if writer in written:
            continue
        written.add(writer)
        if writer is write_msmt17:
            write_msmt17(root, msmt_version)
        else:
            writer(root)
    return root


__all__ = ["WRITERS", "FAKE_FIGURES", "write_fakes", "write_market1501", "write_dukemtmc", "write_msmt17", "write_mars",
           "write_dukemtmc_videoreid", "write_dukemtmc_si_tracklet", "TRAIN_IDS", "TEST_IDS", "CAMERAS"]
