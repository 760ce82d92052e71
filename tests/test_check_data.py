"""canu-check-data: the per-split counts of every dataset a config names, against the release's
figures; on the layout-faithful fakes (canu_plugin.data.fakes) and deliberately broken copies."""
import os
import shutil

import pytest

from canu_plugin.cli import check_data as tool
from canu_plugin.data import check
from canu_plugin.data.fakes import FAKE_FIGURES, WRITERS, write_msmt17


@pytest.fixture
def fakes(fake_root):
    """Fakes of every release (MSMT17 V2) under one root (conftest)."""
    return fake_root


@pytest.fixture
def as_released(monkeypatch):
    """Compare with the fakes' own figures, as if the fakes were the releases."""
    monkeypatch.setattr(check, "OFFICIAL", FAKE_FIGURES)


def test_every_supported_release_has_official_figures():
    assert set(check.OFFICIAL) == set(WRITERS) == set(FAKE_FIGURES)
    assert check.OFFICIAL["Market1501"].splits["train"] == (751, 12936)
    assert check.OFFICIAL["DukeMTMCSITracklet"].splits == {"train": (702, 5803), "query": (701, 701),
                                                           "gallery": (1086, 6143)}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_fakes_read_as_their_figures(fakes, name):
    result = check.check_dataset(name, fakes, official=FAKE_FIGURES)
    assert not result.problems, result.problems
    assert check.check_dataset(name, fakes).problems  # and the real release's figures are not the fakes'


def test_msmt17_v1_is_read_and_named(tmp_path):
    write_msmt17(str(tmp_path), "MSMT17_V1")
    result = check.check_dataset("MSMT17", str(tmp_path), official=FAKE_FIGURES)
    assert not result.problems and "version: MSMT17_V1" in " ".join(result.notes)
    assert result.counts["train"].items == 45  # list_train.txt, what fast-reid's MSMT17 trains on (release: 30,248)
    write_msmt17(str(tmp_path), "MSMT17_V2")
    assert "both here; fast-reid reads MSMT17_V1 only" in " ".join(check.check_dataset("MSMT17", str(tmp_path)).notes)


@pytest.mark.parametrize("name, images", [("MSMT17", 45), ("MSMT17TrainVal", 48)])
def test_the_msmt17_training_figure_is_what_the_training_loader_reads(fakes, name, images):
    from canu_plugin.data.datasets import train_items
    loaded = train_items((name,), fakes, show=False)  # what the trainers' loaders are built from
    assert len(loaded) == images  # list_train.txt (+ list_val.txt: its last 3 images)
    counted = check.check_dataset(name, fakes, official=FAKE_FIGURES).counts["train"]
    assert counted.items == len(loaded) and counted.ids == len({pid for _, pid, _ in loaded})
    assert check.OFFICIAL[name].splits["train"] == {"MSMT17": (1041, 30248), "MSMT17TrainVal": (1041, 32621)}[name]


def test_mmt_trains_on_msmt17_train_and_val_and_ssg_does_not(fakes):
    from canu_plugin.engine import setup_cfg
    for pair in ("M2MSMT", "D2MSMT"):
        for config in (f"mmt/mmt_{pair}.yml", f"mmt/adv_mmt_{pair}.yml", f"mmt/canu_mmt_{pair}.yml"):
            cfg = setup_cfg(config, ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False"])
            assert (cfg.DATASETS.NAMES, cfg.DATASETS.TESTS, cfg.DATASETS.COMBINEALL) == (
                ("MSMT17TrainVal",), ("MSMT17",), False), config
        cfg = setup_cfg(f"ssg/ssg_{pair}.yml", ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False"])
        assert cfg.DATASETS.NAMES == ("MSMT17",)  # SSG's code leaves list_val out


def test_msmt17_train_val_refuses_combineall(fakes):
    from fastreid.data.datasets import DATASET_REGISTRY

    from canu_plugin.errors import CanuError
    with pytest.raises(CanuError, match="COMBINEALL would add list_val.txt a second time"):
        DATASET_REGISTRY.get("MSMT17TrainVal")(root=fakes, combineall=True)


def test_the_command_prints_every_dataset_of_the_config(fakes, as_released, capsys):
    rc = tool.main(["--config-file", "configs/ssg/canu_ssg_M2D.yml", "--root", fakes])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "== DukeMTMC" in out and "== Market1501" in out  # target, and SSG's source (PSEUDO.SOURCE_DATASETS)
    assert "  train    8    3        48" in out and out.count("OK: matches the release") == 2


def test_a_half_copied_folder_and_a_renamed_split_are_flagged(fakes, as_released, tmp_path, capsys):
    root = str(tmp_path)
    shutil.copytree(os.path.join(fakes, "Market-1501-v15.09.15"), os.path.join(root, "Market-1501-v15.09.15"))
    train = os.path.join(root, "Market-1501-v15.09.15", "bounding_box_train")
    for name in sorted(os.listdir(train))[::2]:
        os.remove(os.path.join(train, name))
    args = ["--config-file", "configs/usl/pseudo_Market1501.yml", "--root", root]
    assert tool.main(args) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: train: 24 images, the release has 48 (a half-copied folder?)" in out
    assert "ERROR: Market1501: unreadable or not as released" in out
    assert tool.main(args + ["--warn-only"]) == 0 and "WARNING: Market1501" in capsys.readouterr().out
    os.rename(os.path.join(root, "Market-1501-v15.09.15", "query"), os.path.join(root, "Market-1501-v15.09.15", "q"))
    assert tool.main(args) == 1
    assert "ERROR: cannot read it, missing folder" in capsys.readouterr().out


def test_synthetic_datasets_are_counted_not_compared(synth_root, capsys):
    assert tool.main(["--config-file", "configs/synthetic/quick_sup.yml", "--root", synth_root]) == 0
    out = capsys.readouterr().out
    assert "== SynthA" in out and "no official figures" in out and "MISMATCH" not in out


def test_an_unknown_dataset_name_is_an_error(fakes, capsys):
    rc = tool.main(["--config-file", "configs/usl/pseudo_Market1501.yml", "--root", fakes, "DATASETS.TESTS",
                    '("Market1502",)'])
    assert rc == 1 and "no dataset named 'Market1502'" in capsys.readouterr().out
