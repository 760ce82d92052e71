"""The documentation's real-data commands, run as they are written, on layout-faithful fakes of the releases.

Every fenced shell block of README.md, docs/real-data.md and the "Reproducing on real data with a GPU"
section of docs/benchmark.md has a marker on the line above it:

- ``<!-- test: real-data -->``: run here, on ``~/reid/datasets`` holding the fakes of Market-1501 and
  DukeMTMC-reID only (the user this page is written for); ``<!-- test: real-data +MARS -->`` adds the named
  releases (names of :data:`canu_plugin.data.fakes.WRITERS`); ``; given models/x.pth`` puts a fast-reid
  model at that path first (a copy of the page's first source model, as a model-zoo file would be);
- ``<!-- test: skip, <reason> -->``: not run here (installs and ``make`` targets; the reason says what runs them).

A block without a marker fails, so a new block cannot go untested by accident. The blocks of one page run
in order in one session, as a user following the page: ``HOME`` is a temporary folder, the working folder
``~/reid``. Each command runs verbatim through the function of its console script (the installed package's
entry points), ``~`` expanded as the shell would, with only device, size and budget overrides
appended (:data:`TINY`: CPU, ResNet-18, 32x16, one short epoch), and must exit 0. ``canu-check-data``
compares with the fakes' own figures, as if they were the releases.
"""
import logging
import os
import re
import shlex
import shutil

import pytest

from canu_plugin.data import check
from canu_plugin.data.fakes import FAKE_FIGURES, WRITERS, write_fakes
from test_real_configs import tiny_run_overrides

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = {"README.md": None, "docs/real-data.md": None, "docs/benchmark.md": "Reproducing on real data with a GPU"}
MARKER = re.compile(r"<!-- test: (?P<kind>real-data|skip)(?P<rest>[^>]*?) -->")
FENCE = re.compile(r"^```(bash|sh|shell|console)\s*$")
BASE_DATASETS = ("Market1501", "DukeMTMC")
KEEP = {"MODEL.WEIGHTS", "MODEL.MMT.SOURCE_WEIGHTS", "OUTPUT_DIR", "SEED"}  # what the commands chain through
TINY = [w for k, v in zip(*[iter(tiny_run_overrides("-"))] * 2) if k not in KEEP for w in (k, v)]


def _section(text, heading):
    """The lines of ``text`` (with their 1-based numbers) under ``heading`` (None: all), up to the next
    heading of the same or a higher level."""
    lines = list(enumerate(text.splitlines(), 1))
    if heading is None:
        return lines
    start = next(i for i, (_, ln) in enumerate(lines) if re.match(r"#+ ", ln) and ln.lstrip("#").strip() == heading)
    level = len(lines[start][1]) - len(lines[start][1].lstrip("#"))
    end = next((j for j in range(start + 1, len(lines))
                if re.match(r"#{1,%d} " % level, lines[j][1])), len(lines))
    return lines[start:end]


def blocks(page):
    """[(line, marker or None, block text)] of every shell block of ``page`` in its tested section."""
    with open(os.path.join(REPO, page)) as f:
        lines = _section(f.read(), PAGES[page])
    out, i = [], 0
    while i < len(lines):
        number, line = lines[i]
        if FENCE.match(line):
            before = next((ln for _, ln in reversed(lines[:i]) if ln.strip()), "")
            end = next(j for j in range(i + 1, len(lines)) if lines[j][1].startswith("```"))
            out.append((number, MARKER.fullmatch(before.strip()), "\n".join(ln for _, ln in lines[i + 1:end])))
            i = end
        i += 1
    return out


def commands(block):
    """The block's commands as argument lists: continuation lines joined, comments dropped, ``~`` expanded."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append([os.path.expanduser(w) if w.startswith("~") else w for w in words])
    return out


def console_scripts():
    """{command: entry point} of the installed package's console scripts (what a user's shell finds)."""
    from importlib.metadata import distribution
    return {ep.name: ep for ep in distribution("canu-plugin").entry_points if ep.group == "console_scripts"}


def run_command(words):
    """Run one command through its console script's function, with :data:`TINY` appended where it trains;
    returns the exit code."""
    scripts = console_scripts()
    assert words[0] in scripts, f"{words[0]!r} is not a console script of this package ({sorted(scripts)})"
    argv = list(words[1:])
    if words[0] == "canu-train":
        argv += TINY
    elif words[0] == "canu-bench" and "--dry-run" not in argv:
        assert "--opts" not in argv, "append the budget to an existing --opts: not written yet"
        argv += ["--opts", *TINY]
    try:
        code = scripts[words[0]].load()(argv)
    except SystemExit as e:
        code = e.code
    return code or 0


def test_the_five_commands_the_readme_names_are_installed():
    assert set(console_scripts()) == {"canu-train", "canu-check-data", "canu-bench", "canu-synth", "canu-export"}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """{dataset name: folder holding only that release's fake} (MSMT17 and its train + val variant share one)."""
    base = tmp_path_factory.mktemp("releases")
    return {name: write_fakes(str(base / name), (name,)) for name in WRITERS}


def _lay_out(root, names, releases):
    """``root`` holds the fakes of ``names`` and nothing else (links to the release folders)."""
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    for name in names:
        for entry in os.listdir(releases[name]):
            os.symlink(os.path.join(releases[name], entry), os.path.join(root, entry))


def _marker_options(rest):
    """(extra releases, files to provide) from a real-data marker's text after ``real-data``."""
    extra = re.findall(r"\+(\w+)", rest)
    given = re.findall(r"given (\S+)", rest)
    assert set(extra) <= set(WRITERS), f"unknown release in the marker: {extra}"
    return extra, given


@pytest.fixture
def session(tmp_path, monkeypatch, releases):
    """A user's machine: HOME in tmp_path, working folder ~/reid, FASTREID_DATASETS=~/reid/datasets; the
    fakes stand for the releases in canu-check-data; fast-reid's dataset root restored afterwards."""
    import fastreid.data.build as build
    home = tmp_path / "home"
    (home / "reid").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "reid")
    monkeypatch.setattr(build, "_root", build._root)
    monkeypatch.setenv("FASTREID_DATASETS", str(home / "reid" / "datasets"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(check, "OFFICIAL", FAKE_FIGURES)
    loggers = [logging.getLogger(n) for n in ("", "fastreid", "canu_plugin", "fvcore")]
    before = [list(lg.handlers) for lg in loggers]
    yield home / "reid"
    for lg, kept in zip(loggers, before):  # the runs' log files and consoles (fast-reid's setup_logger)
        for handler in [h for h in lg.handlers if h not in kept]:
            lg.removeHandler(handler)
            handler.close()


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_shell_block_is_marked(page):
    found = blocks(page)
    unmarked = [line for line, marker, _ in found if marker is None]
    assert not unmarked, (f"{page}: the shell blocks at lines {unmarked} have no marker: add `<!-- test: "
                          "real-data -->` (run on the fakes by this test) or `<!-- test: skip, <reason> -->` above")
    for line, marker, _ in found:
        if marker["kind"] == "skip":
            assert marker["rest"].strip(", "), f"{page}:{line}: a skipped block says why"
    assert any(m["kind"] == "real-data" for _, m, _ in found), f"{page}: no real-data block found"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_real_data_blocks_run_on_the_fakes(page, session, releases, capsys):
    ran = 0
    for line, marker, text in blocks(page):
        if marker is None or marker["kind"] != "real-data":
            continue
        extra, given = _marker_options(marker["rest"])
        _lay_out(session / "datasets", (*BASE_DATASETS, *extra), releases)
        for path in given:  # a model-zoo file: the first source model of the page, in fast-reid's format
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            shutil.copy(session / "logs" / "Market1501" / "sup_R50" / "model_final.pth", path)
        for words in commands(text):
            code = run_command(words)
            assert code == 0, f"{page}:{line}: `{shlex.join(words)}` exited {code}:\n{capsys.readouterr().err[-3000:]}"
            ran += 1
    assert ran
    if page == "README.md":
        _check_paper_recipe(session)
    if page == "docs/benchmark.md":  # the benchmark ran its four runs and wrote its report
        folder = session / "results" / "M2D"
        assert {p.name for p in folder.glob("*.json")} >= {"source_s0.json", "source_b_s100.json", "mmt_s0.json",
                                                            "canu_mmt_s0.json"}
        assert (folder / "results.md").is_file()


def _check_paper_recipe(reid):
    """The README's example is CANU-MMT's recipe: two source models (two seeds, two folders), MMT and
    CANU-MMT from both, each evaluated."""
    from canu_plugin.engine import setup_cfg
    sources = [reid / "logs" / "Market1501" / d for d in ("sup_R50", "sup_R50_2")]
    seeds = [setup_cfg(str(s / "config.yaml"), ["MODEL.DEVICE", "cpu"]).SEED for s in sources]
    assert len(set(seeds)) == 2, seeds
    for run in ("mmt_M2D", "canu_mmt_M2D"):
        cfg = setup_cfg(str(reid / "logs" / "mmt" / run / "config.yaml"), ["MODEL.DEVICE", "cpu"])
        assert [os.path.abspath(p) for p in cfg.MODEL.MMT.SOURCE_WEIGHTS] == [
            str(s / "model_final.pth") for s in sources]
        assert (reid / "logs" / "mmt" / run / "final_results.json").is_file()
    assert setup_cfg(str(reid / "logs" / "mmt" / "canu_mmt_M2D" / "config.yaml"),
                     ["MODEL.DEVICE", "cpu"]).MODEL.CANU.ENABLED
