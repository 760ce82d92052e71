"""The synthetic testbed infrastructure: camera effects beyond colour, the testbed spec, the pre-training
stage (the ImageNet stand-in, loaded through fast-reid's MODEL.BACKBONE.PRETRAIN_PATH) and the criteria
of docs/bench/testbed.md computed from the rows not under test."""
import glob
import json
import os
import shutil

import pytest
import torch

from canu_plugin.bench import candidates, criteria as crit, pretrain
from canu_plugin.bench.testbed import DEFAULTS, PRETRAIN_DEFAULTS, knobs, load_testbed, method_opts, set_knob
from canu_plugin.data.synthetic import generate_domain
from canu_plugin.data.synthetic_effects import EFFECTS
from canu_plugin.engine import setup_cfg
from canu_plugin.errors import CanuError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_train_ids=6, num_test_ids=3, images_per_camera=(2, 2), num_distractors=1, image_size=(32, 16))


def _images(root, name):
    return {os.path.relpath(p, root): open(p, "rb").read() for p in sorted(glob.glob(os.path.join(root, name, "*", "*")))}


def test_camera_effects_off_is_the_old_domain_and_each_effect_changes_images(tmp_path):
    generate_domain(tmp_path / "plain", "SynthB", **TINY)
    generate_domain(tmp_path / "zero", "SynthB", camera_effects={"occlusion": 0.0}, **TINY)
    plain = _images(tmp_path / "plain", "SynthB")
    assert plain == _images(tmp_path / "zero", "SynthB")  # all zeros: byte-identical, same meta.json
    meta = json.loads((tmp_path / "zero" / "SynthB" / "meta.json").read_text())
    assert "camera_effects" not in meta["args"]  # domains generated before the knob are still recognised
    for effect in EFFECTS:
        generate_domain(tmp_path / effect, "SynthB", camera_effects={effect: 1.0}, **TINY)
        changed = _images(tmp_path / effect, "SynthB")
        assert changed.keys() == plain.keys()  # same plan (ids, cameras, frames): only the pixels change
        assert sum(changed[k] != plain[k] for k in plain) > len(plain) // 3, effect
    with pytest.raises(CanuError, match="unknown camera effect"):
        generate_domain(tmp_path / "bad", "SynthB", camera_effects={"colour": 0.5}, **TINY)
    with pytest.raises(CanuError, match=r"in \[0, 1\]"):
        generate_domain(tmp_path / "bad", "SynthB", camera_effects={"pose": 2}, **TINY)


def test_testbed_spec_defaults_are_the_committed_benchmark_and_bad_keys_are_refused():
    tb = load_testbed({})
    assert knobs(tb) == {} and all(method_opts(tb, m) == [] for m in ("source", "pseudo", "mmt", "upper"))
    for path in glob.glob(os.path.join(REPO, "configs", "synthetic", "testbeds", "*.yml")):
        assert load_testbed(path)["name"] == os.path.basename(path)[:-4]
    tb = load_testbed(set_knob(set_knob({"pretrain": {}, "epochs": {"source": 20}}, "target.camera_shift", "1.0"),
                               "input_size", "[128, 64]"))
    assert tb["pretrain"] == PRETRAIN_DEFAULTS and tb["target"] == {"camera_shift": 1.0}
    opts = method_opts(tb, "source_b", "w.pth")  # MMT's second source model gets the source's budget
    assert opts == ["MODEL.BACKBONE.PRETRAIN", "True", "MODEL.BACKBONE.PRETRAIN_PATH", "w.pth", "INPUT.SIZE_TRAIN",
                    "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]", "SOLVER.MAX_EPOCH", "20"]
    with pytest.raises(CanuError, match="unknown key"):
        load_testbed({"pretrain": {"epoch": 3}})
    with pytest.raises(CanuError, match="unknown key"):
        load_testbed({"domains": {"camera_shfit": 0.5}})
    assert set(DEFAULTS) >= {"domains", "source", "target", "input_size", "epochs", "pretrain"}


TINY_PRETRAIN = dict(PRETRAIN_DEFAULTS, domains=2, num_train_ids=6, num_test_ids=3, images_per_camera=[1, 2],
                     image_size=[32, 16], epochs=1, opts=["SOLVER.IMS_PER_BATCH", "16", "DATALOADER.NUM_WORKERS", "0"])


def _model_cfg(weights, *opts):
    return setup_cfg("configs/synthetic/quick_sup.yml", ["MODEL.BACKBONE.PRETRAIN", "True",
                                                          "MODEL.BACKBONE.PRETRAIN_PATH", str(weights), *opts])


def test_pretrain_stage_caches_and_its_backbone_loads_through_pretrain_path(tmp_path, monkeypatch):
    from fastreid.modeling import build_model
    out = pretrain.ensure_pretrained(str(tmp_path / "res"), TINY_PRETRAIN, str(tmp_path / "data"), [32, 16],
                                     log=lambda *a: None)
    saved = torch.load(out["path"], weights_only=True)
    assert not out["cached"] and out["wall_s"] > 0 and "conv1.weight" in saved and "layer4.1.bn2.running_var" in saved
    assert not any(k.startswith(("backbone.", "heads.")) for k in saved)  # fast-reid's ResNet names only
    side = json.loads(open(out["path"][:-4] + ".provenance.json").read())
    assert side["arch"]["DEPTH"] == "18x" and len(side["provenance"]["data"]) == 2
    assert side["provenance"]["data"][1]["style"] == "SynthPre" and "SOLVER.MAX_EPOCH" in side["provenance"]["opts"]
    assert not glob.glob(os.path.join(os.path.dirname(out["path"]), "run", "*.pth"))  # only the backbone is kept
    mtime = os.path.getmtime(out["path"])
    monkeypatch.setattr(pretrain, "train_child", lambda *a, **k: pytest.fail("retrained a cached backbone"))
    again = pretrain.ensure_pretrained(str(tmp_path / "res"), TINY_PRETRAIN, str(tmp_path / "data"), [32, 16],
                                       log=lambda *a: None)
    assert again["cached"] and again["path"] == out["path"] and os.path.getmtime(out["path"]) == mtime
    sibling = pretrain.ensure_pretrained(str(tmp_path / "res2"), TINY_PRETRAIN, str(tmp_path / "data"), [32, 16],
                                         log=lambda *a: None, elsewhere=[str(tmp_path / "res")])
    assert sibling["cached"] and os.path.samefile(sibling["path"], out["path"])  # linked, not trained again
    other = pretrain.provenance(dict(TINY_PRETRAIN, epochs=2), str(tmp_path / "data"), [32, 16])
    assert other != side["provenance"]  # another budget is another cache entry
    model = build_model(_model_cfg(out["path"]))  # a real fast-reid model build reads PRETRAIN_PATH
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], v) for k, v in saved.items()) and set(saved) == set(own)
    with pytest.raises(CanuError, match="pre-trained for another backbone: DEPTH 18x"):
        build_model(_model_cfg(out["path"], "MODEL.BACKBONE.DEPTH", "34x"))  # every r18 tensor fits an r34
    bare = tmp_path / "bare.pth"  # the weights without their provenance: the shapes give it away
    shutil.copy(out["path"], bare)
    with pytest.raises(CanuError, match="other shapes"):
        build_model(_model_cfg(bare, "MODEL.BACKBONE.DEPTH", "50x", "MODEL.BACKBONE.FEAT_DIM", "2048"))


def _record(map_, d_inter=0.1, probe=50.0, pseudo=()):
    return {"final": {"mAP": map_, "d_inter_pooled": d_inter, "cam_probe": probe}, "pseudo": list(pseudo),
            "epochs": [], "wall_s": 1.0}


def _fake_records(nmi=(0.3, 0.25), transfer=(20, 22, 21), mmt_nmi=(0.24, 0.2), ssg=(22, 23, 22)):
    recs = {}
    clusterings = lambda values: [{"epoch": e, "nmi_cam": v, "gt_nmi_cam": 0.15} for e, v in enumerate(values)]
    for s, (src, up, pse, mmt, sg, tri) in enumerate(zip(transfer, (50, 50, 52), (35, 36, 35), (38, 40, 39), ssg,
                                                         (18, 19, 20))):
        recs.update({("source", s): _record(src), ("upper", s): _record(up, 0.10 + s / 100, 40 + s),
                     ("pseudo", s): _record(pse, pseudo=clusterings(nmi)),
                     ("mmt", s): _record(mmt, pseudo=clusterings(mmt_nmi)),
                     ("ssg", s): _record(sg, pseudo=clusterings((0.4, 0.1))),
                     ("acan_triplet", s): _record(tri, 0.20 + s / 50, 70 - s),
                     ("canu", s): _record(90.0)})  # a method under test: never read
    return recs


def test_criteria_revision_2_from_row_records():
    rows = {r["key"]: r for r in crit.criteria(_fake_records())}
    assert rows["transfer"]["text"] == "0.41 (0.40-0.44)" and rows["transfer"]["pass"]
    assert rows["closed_pseudo"]["text"] == "0.48 (0.45-0.50)" and rows["closed_pseudo"]["pass"]  # (35-20)/30, ...
    assert rows["closed_mmt"]["pass"] and rows["closed_ssg"]["pass"] is False  # (22-20)/30 ...: SSG out of regime
    assert rows["mmt"]["pass"] is None and rows["mmt"]["text"].startswith("+3.7 [")  # reported, no gate
    assert rows["nmi_pseudo"]["text"] == "first 2.00, min 1.67 (of 2)" and rows["nmi_pseudo"]["pass"]
    assert rows["nmi_mmt"]["text"] == "first 1.60, min 1.33 (of 2)" and rows["nmi_mmt"]["pass"]  # >= 1.5, >= 1.2
    assert rows["nmi_ssg"]["pass"] is False  # 0.1 / 0.15 at its second clustering
    assert rows["d_inter"]["pass"] and rows["cam_probe"]["pass"]
    assert rows["triplet"]["text"] == "0.37 (0.36-0.38)" and rows["triplet"]["pass"]
    assert crit.verdict(list(rows.values())) == "pass"  # SSG's premises are reported, not required
    assert crit.premises(list(rows.values())) == {"pseudo": {"closed": True, "bias": True},
                                                  "mmt": {"closed": True, "bias": True},
                                                  "ssg": {"closed": False, "bias": False}, "acan": True}
    failing = {r["key"]: r["pass"] for r in crit.criteria(_fake_records(nmi=(0.3, 0.15), transfer=(30, 32, 31)))}
    assert failing["nmi_pseudo"] is False and failing["transfer"] is False and failing["closed_pseudo"] is False
    late = {r["key"]: r["pass"] for r in crit.criteria(_fake_records(mmt_nmi=(0.3, 0.17)))}  # 1.13 < 1.2 later
    assert late["nmi_mmt"] is False and crit.verdict(crit.criteria(_fake_records(mmt_nmi=(0.3, 0.17)))) == "fail"
    early = crit.criteria(_fake_records(mmt_nmi=(0.2, 0.3)))  # 1.33 < 1.5 at the first clustering
    assert {r["key"]: r["pass"] for r in early}["nmi_mmt"] is False
    one_seed = {k: v for k, v in _fake_records().items() if k[1] == 0}
    single = {r["key"]: r for r in crit.criteria(one_seed)}
    assert single["d_inter"]["pass"] is None and crit.verdict(list(single.values())) == "incomplete"  # no interval
    line = crit.log_row("c1", "{}", [0, 1, 2], list(rows.values()), 12.0, 345.0)
    assert line.count("|") == crit.LOG_HEADER.count("|") and "| pass | 12 | 345 |" in line
    from canu_plugin.bench.claims import PAPER_CLAIMS, decidable
    assert len(decidable(PAPER_CLAIMS, list(rows.values()))) == 8  # every key claim but CANU-SSG - SSG
    no_probe = [dict(r, **({"pass": False} if r["key"] == "cam_probe" else {})) for r in rows.values()]
    assert {c.a for c in decidable(PAPER_CLAIMS, no_probe)} == {"canu", "canu_mmt", "adv_mmt"}  # ACAN's premises fail
    assert "| fail (3 of 9 key claims decidable) |" in crit.log_row("c2", "{}", [0], no_probe, None, 1.0, (3, 9))


def test_nmi_ratio_is_a_mean_over_seeds_at_each_clustering():
    recs = {("pseudo", s): {"pseudo": [{"nmi_cam": a, "gt_nmi_cam": 0.1}, {"nmi_cam": b, "gt_nmi_cam": 0.1}]}
            for s, (a, b) in enumerate([(0.2, 0.1), (0.1, 0.15)])}
    ratios = crit.nmi_ratios(recs)
    assert ratios == {0: pytest.approx([2.0, 1.0]), 1: pytest.approx([1.0, 1.5])}
    text, first, lowest, ok = crit.bias_premise(ratios)
    assert (first, lowest, ok) == (pytest.approx(1.5), pytest.approx(1.25), True)  # each seed alone would fail


def test_testbed_search_refuses_methods_under_test(tmp_path, capsys):
    for method in ("canu", "adv", "canu_mmt", "adv_mmt", "canu_ssg", "adv_ssg", "acan_grl", "acan_oce", "acan_ace"):
        with pytest.raises(CanuError, match="not under test"):
            crit.check_rows(["source", method])
        with pytest.raises(CanuError, match="not under test"):  # before generating or training anything
            candidates.run_candidate(load_testbed({}), str(tmp_path), [0], ["source", method])
    assert not os.listdir(tmp_path)
    from canu_plugin.cli.testbed import main
    with pytest.raises(SystemExit):
        main(["--methods", "pseudo", "adv", "--output", str(tmp_path), "--log", ""])
    assert "adv" in capsys.readouterr().err
    log = tmp_path / "log.md"
    log.write_text("# Testbed\n\n## Candidate log\n")
    candidates.append_log(str(log), "| a |")
    candidates.append_log(str(log), "| b |")
    text = log.read_text()
    assert text.count(crit.LOG_HEADER) == 1 and text.endswith("| a |\n| b |\n")


def test_candidate_tool_scores_a_finished_folder_and_logs_one_row(tmp_path, capsys):
    from canu_plugin.cli.testbed import main
    for (method, seed), rec in _fake_records().items():
        (tmp_path / f"{method}_s{seed}.json").write_text(json.dumps(dict(rec, method=method, seed=seed)))
    log = tmp_path / "log.md"
    assert main(["--from-folder", str(tmp_path), "--log", str(log), "--name", "fake"]) == 0
    assert "fake (" in capsys.readouterr().out
    rows = [ln for ln in log.read_text().splitlines() if ln.startswith("| fake |")]
    assert len(rows) == 1 and "| 0 1 2 |" in rows[0] and rows[0].count("✓") == 8 and rows[0].count("✗") == 2 \
        and "| pass (8 of 9 key claims decidable) |" in rows[0]  # SSG misses: CANU-SSG - SSG out of regime


def test_a_sibling_testbeds_finished_run_is_reused_only_with_the_same_data_and_options(tmp_path, monkeypatch):
    from canu_plugin.bench import runner
    from canu_plugin.bench.testbed import data_key
    trained = []

    def fake_execute(setting, key, method, seed, opts, planned, folder, log=print, env=None):
        trained.append((folder, key))
        run = os.path.join(folder, "runs", f"{key}_s{seed}")
        os.makedirs(run)
        with open(os.path.join(run, "model_final.pth"), "w") as f:
            f.write(folder)
        record = {"method": key, "seed": seed, "identity": planned, "plots": {"pca": os.path.join(run, "pca.png")}}
        with open(os.path.join(folder, f"{key}_s{seed}.json"), "w") as f:
            json.dump(record, f)
        return record

    monkeypatch.setattr(runner, "execute", fake_execute)
    a, b, c = (str(tmp_path / n) for n in "abc")
    budget = {"pseudo": ("SOLVER.MAX_EPOCH", "12")}
    runner.Bench("synthetic", a, per_method=budget).ensure("source", 0, {})
    got = runner.Bench("synthetic", b, per_method=budget, donors=(a,)).ensure("source", 0, {})
    assert trained == [(a, "source")]  # reused, not trained again
    assert os.path.samefile(os.path.join(a, "runs", "source_s0", "model_final.pth"),
                            os.path.join(b, "runs", "source_s0", "model_final.pth"))
    assert got["plots"]["pca"] == os.path.join(b, "runs", "source_s0", "pca.png")
    assert json.load(open(os.path.join(b, "source_s0.json"))) == got
    other = {"source": ("SOLVER.MAX_EPOCH", "3")}  # another budget for this row: its own run
    runner.Bench("synthetic", c, per_method=other, donors=(a,)).ensure("source", 0, {})
    assert trained[-1] == (c, "source")
    runner.Bench("synthetic", a, per_method=budget).ensure("pseudo", 0, {"source": "source_s0"})
    runner.Bench("synthetic", b, per_method=budget, donors=(a,)).ensure("pseudo", 0, {"source": "source_s0"})
    assert trained[-1] == (a, "pseudo")  # b's source is a's: its pseudo-label run too
    runner.Bench("synthetic", c, per_method={**other, **budget}, donors=(a,)).ensure("pseudo", 0, {"source": "source_s0"})
    assert trained[-1] == (c, "pseudo")  # same options, but c's source model is another one
    tb = load_testbed({"epochs": {"pseudo": 12}})
    assert data_key(tb) == data_key(load_testbed({})) != data_key(load_testbed({"domains": {"num_train_ids": 50}}))


TINY = {"num_train_ids": 4, "num_test_ids": 3, "images_per_camera": [1, 2], "num_distractors": 1, "image_size": [32, 16]}


def _hashes(root, name):
    import hashlib
    out = {}
    for dirpath, _, files in os.walk(os.path.join(root, name)):
        for f in files:
            if f.endswith(".jpg"):
                out[os.path.relpath(os.path.join(dirpath, f), root)] = hashlib.md5(open(os.path.join(dirpath, f), "rb").read()).hexdigest()
    return out


def test_each_run_seed_draws_its_own_pair_and_the_same_seed_the_same_pair(tmp_path):
    from canu_plugin.bench.testbed import data_key, data_seed, draw_root, generate_data
    tb = load_testbed({"domains": TINY})
    assert tb["seed"] is None and [data_seed(tb, s) for s in (0, 1, 2)] == [0, 1, 2]
    fixed = load_testbed({"domains": TINY, "seed": 7})  # one draw for every seed, if a testbed asks for it
    assert [data_seed(fixed, s) for s in (0, 1)] == [7, 7] and data_key(fixed, 0) == data_key(fixed, 1)
    assert data_key(tb, 0) != data_key(tb, 1) and data_key(tb, 1) == data_key(load_testbed({"domains": TINY}), 1)
    roots = {s: draw_root(str(tmp_path / "tb"), tb, s) for s in (0, 1)}
    for s, root in roots.items():
        generate_data(tb, root, s)
    again = str(tmp_path / "again")
    generate_data(tb, again, 1)
    for name in ("SynthA", "SynthB"):
        h0, h1, h1b = _hashes(roots[0], name), _hashes(roots[1], name), _hashes(again, name)
        assert h1 and h1 == h1b  # the same seed: the same pair, byte for byte
        assert set(h0.values()).isdisjoint(h1.values())  # another seed: other images


def test_a_run_trains_on_its_own_seeds_draw_and_is_not_reused_across_draws(tmp_path, monkeypatch):
    from canu_plugin.bench import runner
    seen = []

    def fake_execute(setting, key, method, seed, opts, planned, folder, log=print, env=None):
        seen.append((seed, env["FASTREID_DATASETS"], planned["data"]))
        record = {"method": key, "seed": seed, "identity": planned}
        with open(os.path.join(folder, f"{key}_s{seed}.json"), "w") as f:
            json.dump(record, f)
        return record

    monkeypatch.setattr(runner, "execute", fake_execute)
    draws = {s: {"root": f"/data/draw_{s}", "key": f"k{s}"} for s in (0, 1)}
    bench = runner.Bench("synthetic", str(tmp_path), draws=draws)
    for s in (0, 1):
        bench.ensure("source", s, {})
    assert seen == [(0, "/data/draw_0", "k0"), (1, "/data/draw_1", "k1")]
    other = runner.Bench("synthetic", str(tmp_path), draws={0: {"root": "/data/x", "key": "another"}})
    with pytest.raises(CanuError, match="other options"):  # the finished run was made on another draw
        other.ensure("source", 0, {})
    with pytest.raises(CanuError, match="no data draw"):
        bench.ensure("source", 5, {})
    bench.ensure("source_b", 101, {})  # MMT's second source model of seed 1 (trained with seed 101): seed 1's draw
    assert seen[-1] == (101, "/data/draw_1", "k1")
    from canu_plugin.bench.methods import plan
    from canu_plugin.bench.runner import run_name
    seen.clear()
    fresh = runner.Bench("synthetic", str(tmp_path / "all"), draws=draws)
    os.makedirs(fresh.folder)
    for key, seed, deps in plan("synthetic", list(crit.ROWS), [0, 1]):  # every run a candidate plans has its draw
        fresh.ensure(key, seed, {role: run_name(*dep) for role, dep in deps.items()})
    assert {(s % 100, root) for s, root, _ in seen} == {(0, "/data/draw_0"), (1, "/data/draw_1")}
    assert len(seen) == 2 * (len(crit.ROWS) + 1)  # the rows and MMT's second source model, per seed


def test_the_demo_is_the_benchmarks_testbed_with_a_smaller_pretraining_and_shorter_runs():
    """``make demo`` shows ``make bench``'s testbed: the same SynthA / SynthB recipe (so the same draw of seed
    0), a smaller pre-training of the same images, shorter runs of the demo's methods; nothing else differs."""
    from canu_plugin.bench.testbed import data_key
    from canu_plugin.cli.bench import DEMO_METHODS, DEMO_TESTBED
    bench, demo = load_testbed("configs/synthetic/testbeds/detail-060.yml"), load_testbed(DEMO_TESTBED)
    assert demo["domains"] == bench["domains"] and demo["source"] == bench["source"] and demo["target"] == bench["target"]
    assert data_key(demo, 0) == data_key(bench, 0) and demo["seed"] is bench["seed"] is None
    smaller = {k for k in PRETRAIN_DEFAULTS if demo["pretrain"][k] != bench["pretrain"][k]}
    assert smaller == {"domains", "num_train_ids", "epochs"}
    assert all(demo["pretrain"][k] < bench["pretrain"][k] for k in smaller)
    assert set(demo["epochs"]) == set(DEMO_METHODS) and not bench["epochs"]
    assert {k: v for k, v in demo.items() if k not in ("name", "pretrain", "epochs")} == \
        {k: v for k, v in bench.items() if k not in ("name", "pretrain", "epochs")}
