"""canu_plugin.data.datasets: fast-reid's own parser reads the synthetic domains; clear errors for
missing folders and bad file names, for the synthetic and the real datasets."""
import os
import re
import shutil

import pytest
from fastreid.data.datasets import DATASET_REGISTRY

from canu_plugin.data.datasets import SynthDomain, check_dataset_layout, check_image_names
from canu_plugin.data.synthetic import generate_all
from canu_plugin.errors import CanuError

SPLITS = ("bounding_box_train", "query", "bounding_box_test")


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """SynthA (6 cameras) and SynthB (5 cameras), tiny, generated once for this file."""
    root = tmp_path_factory.mktemp("data")
    stats = generate_all(root, num_train_ids=6, num_test_ids=5, images_per_camera=(1, 3), num_distractors=2,
                         image_size=(32, 16))
    return root, stats


@pytest.fixture
def copy_of(domains, tmp_path):
    """A private copy of the generated root, safe to damage."""
    shutil.copytree(domains[0], tmp_path / "root")
    return tmp_path / "root"


def file_cam_pid(path):
    """(camera 1-based, pid) from a Market-style file name."""
    name = os.path.basename(path)
    return int(name[6]), int(name[:4])


@pytest.mark.parametrize("name, prefix", [("SynthA", "syntha"), ("SynthB", "synthb")])
def test_fastreid_parser_reads_synthetic_domain(domains, name, prefix):
    root, stats = domains
    data = DATASET_REGISTRY.get(name)(root=str(root))
    assert isinstance(data, SynthDomain) and data.dataset_name == prefix
    n = stats[name]["images"]
    assert (len(data.train), len(data.query), len(data.gallery)) == (
        n["bounding_box_train"], n["query"], n["bounding_box_test"])
    for items in (data.train, data.query, data.gallery):
        assert [p for p, *_ in items] == sorted(p for p, *_ in items)
    cams = stats[name]["num_cameras"]
    for path, pid, camid in data.train:
        cam, file_pid = file_cam_pid(path)
        assert pid == f"{prefix}_{file_pid}" and camid == f"{prefix}_{cam - 1}"
    for path, pid, camid in data.query + data.gallery:
        cam, file_pid = file_cam_pid(path)
        assert (pid, camid) == (file_pid, cam - 1) and 0 <= camid < cams
    assert data.get_num_pids(data.train) == 6 and data.get_num_pids(data.query) == 5
    assert sum(pid == 0 for _, pid, _ in data.gallery) == 2  # distractors stay in the gallery
    assert {c for _, _, c in data.query} <= set(range(cams))


def test_layout_check_accepts_generated_domains(domains):
    root, _ = domains
    for name in ("SynthA", "SynthB"):
        check_dataset_layout(name, root)
    check_dataset_layout("NoSuchDataset", root)  # unknown names are not checked
    assert check_image_names(os.path.join(root, "SynthA", "query"), max_cam=6) > 0


@pytest.mark.parametrize("remove, missing", [("", "SynthA"), ("SynthA", "SynthA"),
                                             ("SynthA/query", "SynthA/query")])
def test_missing_folders_name_the_folder_and_the_fix(copy_of, tmp_path, remove, missing):
    root = copy_of if remove else tmp_path / "empty"
    if remove:
        shutil.rmtree(root / remove)
    expected = re.escape(str(root / missing)) + r".*canu-synth --root " + re.escape(str(root))
    with pytest.raises(CanuError, match=expected):
        DATASET_REGISTRY.get("SynthA")(root=str(root))
    with pytest.raises(CanuError, match=expected):
        check_dataset_layout("SynthA", root)


@pytest.mark.parametrize("bad_name, problem", [
    ("person_0001.jpg", "does not contain <pid>_c<cam>"), ("0001_c7s1_000001_00.jpg", "camera 7 is outside 1..6"),
    ("1602_c1s1_000001_00.jpg", "pid 1602 is outside"), ("1-2_c1s1_000001_00.jpg", "pid '1-2' is not an integer"),
])
def test_unparsable_file_name_is_named(copy_of, bad_name, problem):
    src = next(p for p in sorted((copy_of / "SynthA" / "bounding_box_train").iterdir()))
    shutil.copy(src, copy_of / "SynthA" / "bounding_box_train" / bad_name)
    expected = re.escape(str(copy_of / "SynthA" / "bounding_box_train" / bad_name)) + ".*" + re.escape(problem)
    with pytest.raises(CanuError, match=expected + r".*Expected names: <pid>_c<cam>"):
        DATASET_REGISTRY.get("SynthA")(root=str(copy_of))  # fast-reid reads the train list in __init__
    with pytest.raises(CanuError, match=expected):
        check_dataset_layout("SynthA", copy_of)


def test_folder_name_that_fastreid_would_misparse(domains, tmp_path):
    shutil.copytree(domains[0] / "SynthA", tmp_path / "run_12_c3" / "SynthA")
    with pytest.raises(CanuError, match=r"finds '12_c3' in a folder name"):
        check_dataset_layout("SynthA", tmp_path / "run_12_c3")


def test_empty_split_folder(copy_of):
    for f in (copy_of / "SynthB" / "query").iterdir():
        f.unlink()
    expected = "no .jpg images in " + re.escape(str(copy_of / "SynthB" / "query")) + ".*make_synthetic.py"
    with pytest.raises(CanuError, match=expected):
        check_dataset_layout("SynthB", copy_of)
    with pytest.raises(CanuError, match=expected + ".*--overwrite"):
        DATASET_REGISTRY.get("SynthB")(root=str(copy_of)).query


def market_like(domains, base, max_images=5):
    """A few synthetic images copied into ``base/{bounding_box_train,query,bounding_box_test}``."""
    for split in SPLITS:
        os.makedirs(base / split)
        for p in sorted((domains[0] / "SynthA" / split).iterdir())[:max_images]:
            shutil.copy(p, base / split / p.name)


def test_real_market_and_duke_layouts(domains, tmp_path):
    with pytest.raises(CanuError, match=r"missing folder .*Market-1501-v15\.09\.15/\{bounding_box_train"):
        check_dataset_layout("Market1501", tmp_path)
    market_like(domains, tmp_path / "Market-1501-v15.09.15")
    check_dataset_layout("Market1501", tmp_path)
    market = DATASET_REGISTRY.get("Market1501")(root=str(tmp_path))  # fast-reid's own class is untouched
    assert type(market).__name__ == "Market1501" and len(market.query) == 5
    with pytest.raises(CanuError, match=re.escape(str(tmp_path / "DukeMTMC-reID"))):
        check_dataset_layout("DukeMTMC", tmp_path)
    market_like(domains, tmp_path / "DukeMTMC-reID")
    bad = tmp_path / "DukeMTMC-reID" / "query" / "0001_c9s1_000001_00.jpg"  # Duke has cameras 1..8
    shutil.copy(next((tmp_path / "DukeMTMC-reID" / "query").iterdir()), bad)
    with pytest.raises(CanuError, match=re.escape(str(bad)) + ".*camera 9 is outside 1..8"):
        check_dataset_layout("DukeMTMC", tmp_path)
    bad.unlink()
    check_dataset_layout("DukeMTMC", tmp_path)


def test_real_msmt17_layout(tmp_path):
    with pytest.raises(CanuError, match=r"MSMT17_V2 \(or MSMT17_V1\).*mask_train_v2"):
        check_dataset_layout("MSMT17", tmp_path)
    base = tmp_path / "MSMT17_V1"
    for d in ("train", "test"):
        (base / d).mkdir(parents=True)
    for name in ("list_train.txt", "list_val.txt", "list_query.txt"):
        (base / name).write_text("")
    with pytest.raises(CanuError, match="missing file " + re.escape(str(base / "list_gallery.txt"))):
        check_dataset_layout("MSMT17", tmp_path)
    (base / "list_gallery.txt").write_text("")
    check_dataset_layout("MSMT17", tmp_path)
