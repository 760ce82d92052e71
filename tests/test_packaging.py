"""Installing like a package: configs found through config_path (source tree or package data), the
import-time requirement check, console scripts and metadata that match the code."""
import importlib
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

import canu_plugin
from canu_plugin import requirements, resources
from canu_plugin.bench.methods import SETTINGS
from canu_plugin.engine import setup_cfg
from canu_plugin.errors import CanuError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))


def test_shipped_names_resolve_with_or_without_prefix_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = os.path.join(REPO, "configs", "synthetic", "quick_sup.yml")
    assert resources.config_path("configs/synthetic/quick_sup.yml") == expected
    assert resources.config_path("synthetic/quick_sup.yml") == expected
    cfg = setup_cfg("configs/synthetic/quick_sup.yml", ["OUTPUT_DIR", str(tmp_path / "o")])
    assert cfg.MODEL.BACKBONE.DEPTH == "18x"  # from Base-Synth.yml, reached through _BASE_


def test_a_users_file_wins_over_a_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "configs" / "synthetic" / "quick_sup.yml"
    mine.parent.mkdir(parents=True)
    mine.write_text("_BASE_: " + os.path.join(REPO, "configs", "synthetic", "quick_sup.yml") + "\nSEED: 7\n")
    assert resources.config_path("configs/synthetic/quick_sup.yml") == str(mine)
    assert setup_cfg("configs/synthetic/quick_sup.yml").SEED == 7
    shipped = resources.config_path("configs/synthetic/quick_sup.yml", user_paths=False)
    assert shipped == os.path.join(REPO, "configs", "synthetic", "quick_sup.yml")


def test_a_missing_config_lists_where_it_looked_and_close_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CanuError) as e:
        resources.config_path("configs/synthetic/quick_supp.yml")
    msg = str(e.value)
    assert str(tmp_path / "configs" / "synthetic" / "quick_supp.yml") in msg
    assert os.path.join(REPO, "configs", "synthetic", "quick_supp.yml") in msg
    assert "configs/synthetic/quick_sup.yml" in msg  # the closest shipped name


def test_installed_package_data_is_found_and_base_includes_work(tmp_path, monkeypatch):
    """A wheel's layout: site-packages/canu_plugin/configs/..., no repository around it; a stray
    site-packages/configs folder of another package is never searched."""
    site = tmp_path / "site-packages"
    shutil.copytree(os.path.join(REPO, "configs"), site / "canu_plugin" / "configs")
    (site / "configs" / "synthetic").mkdir(parents=True)
    (site / "configs" / "synthetic" / "stray.yml").write_text("SEED: 1\n")
    monkeypatch.setattr(resources, "PACKAGE_DIR", str(site / "canu_plugin"))
    monkeypatch.chdir(tmp_path)
    assert resources.config_roots() == [str(site / "canu_plugin" / "configs")]
    path = resources.config_path("configs/mmt/canu_mmt_M2D.yml")
    assert path == str(site / "canu_plugin" / "configs" / "mmt" / "canu_mmt_M2D.yml")
    cfg = setup_cfg(path, ["MODEL.DEVICE", "cpu"])  # three levels of _BASE_, relative to the installed copy
    assert cfg.MODEL.META_ARCHITECTURE == "MMT" and cfg.MODEL.CANU.ENABLED and cfg.MODEL.BACKBONE.DEPTH == "50x"
    with pytest.raises(CanuError):
        resources.config_path("configs/synthetic/stray.yml")


def test_every_config_is_package_data_and_every_benchmark_config_resolves():
    setup_src = open(os.path.join(REPO, "setup.py")).read()
    assert '"*.yml", "*/*.yml", "*/*/*.yml"' in setup_src  # what the wheel takes: up to two folders down
    for folder, _, files in os.walk(os.path.join(REPO, "configs")):
        for f in files:
            rel = os.path.relpath(os.path.join(folder, f), os.path.join(REPO, "configs"))
            assert f.endswith(".yml") and rel.count(os.sep) <= 2, rel
    for setting in SETTINGS.values():
        for method in setting["methods"].values():
            assert os.path.isfile(resources.config_path(method.config, user_paths=False))
    assert len(resources.list_configs()) == sum(len(f) for _, _, f in os.walk(os.path.join(REPO, "configs")))


def test_console_scripts_point_at_mains_and_tools_are_wrappers():
    scripts = PYPROJECT["project"]["scripts"]
    assert set(scripts) == {"canu-train", "canu-bench", "canu-synth", "canu-export", "canu-check-data"}
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
    for tool, module in [("train_net", "train"), ("benchmark", "bench"), ("demo", "bench"),
                         ("make_synthetic", "synth"), ("export_model", "export"),
                         ("check_data", "check_data")]:
        text = open(os.path.join(REPO, "tools", tool + ".py")).read()
        code = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("#", '"""', "``"))]
        assert f"from canu_plugin.cli.{module} import" in text and len(code) <= 6, tool


def test_metadata_matches_the_code():
    project = PYPROJECT["project"]
    assert project["version"] == canu_plugin.__version__
    deps = " ".join(project["dependencies"])
    assert re.search(r"torch>=2\.5\b", deps) and "fastreid" not in deps
    assert requirements.MIN_TORCH == (2, 5)
    assert project["optional-dependencies"]["gpu"][0].startswith("faiss-gpu-cu12")
    assert project["optional-dependencies"]["cpu"][0].startswith("faiss-cpu")
    assert "Apache License" in open(os.path.join(REPO, "LICENSE")).read()
    changelog = open(os.path.join(REPO, "CHANGELOG.md")).read()
    assert f"## {canu_plugin.__version__}" in changelog


def _import_without(module):
    code = f"import sys; sys.modules[{module!r}] = None\nimport canu_plugin"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_without_fastreid_says_how_to_install_it():
    proc = _import_without("fastreid")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("canu_plugin.requirements.MissingRequirement: canu-plugin needs fast-reid 1.4.0")
    assert "-m pip install --no-deps fastreid==1.4.0`" in last and "opencv-python-headless" in last


def test_import_without_faiss_names_the_extras():
    proc = _import_without("faiss")
    assert proc.returncode == 1 and "pip install faiss-cpu" in proc.stderr and "canu-plugin[cpu]" in proc.stderr


def test_too_old_torch_is_refused(monkeypatch):
    import torch
    monkeypatch.setattr(torch, "__version__", "2.4.1+cu121")
    with pytest.raises(requirements.MissingRequirement, match=r"torch>=2\.5.*torch 2\.4\.1"):
        requirements.check_requirements()
    monkeypatch.setattr(torch, "__version__", "2.5.0a0+git1234")
    requirements.check_requirements()


def test_ci_runs_the_readme_block_that_installs_the_wheel():
    """.ci/wheel-check executes the README's 'Use it with fast-reid' block; it must exist, install this
    version's wheel, leave the repository, and train and export with the console scripts."""
    ci = open(os.path.join(REPO, ".ci", "wheel-check")).read()
    awk = re.search(r"awk '(.*?)' \\\n\s*README.md", ci, re.S).group(1)
    block = subprocess.run(["awk", awk, os.path.join(REPO, "README.md")], capture_output=True, text=True,
                           check=True).stdout
    assert f"canu_plugin-{canu_plugin.__version__}-py3-none-any.whl[cpu]" in block
    lines = block.splitlines()
    fastreid = next(i for i, ln in enumerate(lines) if "--no-deps fastreid==1.4.0" in ln)
    plugin = next(i for i, ln in enumerate(lines) if ".whl[cpu]" in ln)
    assert plugin < fastreid  # fastreid last: no pip ERROR about its torch pin
    leave = next(i for i, ln in enumerate(lines) if ln.startswith("mkdir -p ~/") and "&& cd ~/" in ln)
    for command in ("canu-train --help", "canu-synth ", "canu-train --config-file configs/", "canu-export "):
        assert any(ln.startswith(command) for ln in lines[leave:]), command
    assert ".ci/wheel-check" in open(os.path.join(REPO, ".ci", "run")).read()
