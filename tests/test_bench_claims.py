"""The benchmark's claims: verdicts from paired intervals, premises (out of regime), key claims, the
seeds a +-1.5 mAP half-width takes, and a testbed's report deciding them."""
import json
import os

import numpy as np
import pytest
from scipy import stats

from conftest import bench_record

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_verdicts_follow_the_interval():
    from canu_plugin.bench.stats import paired_difference, verdict
    up = paired_difference({0: 2.0, 1: 3.0, 2: 2.5}, {0: 1.0, 1: 1.0, 2: 1.0})
    assert verdict(up, +1) == "holds" and verdict(up, -1) == "does not hold"
    mixed = paired_difference({0: 2.0, 1: 0.0, 2: 1.5}, {0: 1.0, 1: 1.0, 2: 1.0})
    assert verdict(mixed, +1) == "inconclusive" == verdict(mixed, -1)
    assert verdict(paired_difference({0: 2.0}, {0: 1.0}), +1).startswith("inconclusive")


def test_claims_are_decided_on_paired_seeds_and_sweeps():
    from canu_plugin.bench.claims import CLAIMS, evaluate
    pseudo = [{"epoch": e, "nmi_cam": 0.5, "lost_ids": 3} for e in range(3)]
    canu = [{"epoch": e, "nmi_cam": 0.5 - 0.05 * e, "lost_ids": 1} for e in range(3)]
    recs = {}
    for s in range(3):
        recs[("pseudo", s)] = bench_record("pseudo", s, 20.0 + s, pseudo=pseudo)
        recs[("canu", s)] = bench_record("canu", s, 20.5 + s + 0.1 * s, pseudo=[dict(p, epoch=p["epoch"]) for p in canu])
        recs[("adv", s)] = bench_record("adv", s, 21.0 + s, pseudo=pseudo)
    sweep = {("MODEL.CANU.MU", 1.0): {("canu", s): bench_record("canu", s, 20.0 + s) for s in range(3)}}
    sweep[("MODEL.CANU.MU", 1.0)].update({("adv", s): bench_record("adv", s, 10.0 + s) for s in range(3)})
    rows = {r["claim"].text: r for r in evaluate(CLAIMS, recs, sweep)}
    assert rows["CANU lowers the camera information of the pseudo-labels (baseline)"]["verdict"] == "holds"
    assert rows["+CANU loses fewer identities than +Adv (baseline)"]["verdict"] == "holds"
    assert rows["+CANU beats +Adv (baseline)"]["verdict"] == "does not hold"
    assert rows["at a large weight (mu 1.0) +CANU holds where +Adv collapses"]["verdict"] == "holds"
    assert not any("MMT" in t for t in rows)  # no MMT run: no MMT claim


def test_seeds_needed_inverts_the_t_interval():
    from canu_plugin.bench.stats import half_width, paired_difference, seeds_needed
    for sd in (0.5, 1.7, 3.0, 6.0):
        n = seeds_needed(sd, 1.5)
        assert stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) <= 1.5  # n seeds reach +-1.5 ...
        if n > 2:
            assert stats.t.ppf(0.975, n - 2) * sd / np.sqrt(n - 1) > 1.5  # ... and n - 1 would not
    assert seeds_needed(0.5, 1.5) == 3 and seeds_needed(None, 1.5) is None and seeds_needed(1e3, 1.5) is None
    diff = paired_difference({0: 3.0, 1: 1.0, 2: 2.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert half_width(diff) == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3))


def test_claims_out_of_regime_name_the_failed_premise():
    from canu_plugin.bench.claims import CLAIMS, evaluate, markdown
    from canu_plugin.bench.criteria import criteria
    recs = {}
    for s, (src, up, base, mmt) in enumerate([(30.0, 80.0, 32.0, 50.0), (25.0, 75.0, 27.0, 45.0),
                                              (35.0, 85.0, 36.0, 56.0)]):
        for m, v in (("source", src), ("upper", up), ("pseudo", base), ("mmt", mmt)):
            recs[(m, s)] = bench_record(m, s, v)
        recs[("canu", s)] = bench_record("canu", s, base + 1.0 + 0.5 * s)
        recs[("canu_mmt", s)] = bench_record("canu_mmt", s, mmt + 1.0 + 0.5 * s)
    regime = criteria(recs)  # the baseline closes 0.03 of the gap, MMT 0.40
    rows = {r["claim"].text: r for r in evaluate(CLAIMS, recs, regime=regime)}
    base, on_mmt = rows["+CANU beats the base method (baseline)"], rows["+CANU beats the base method (MMT)"]
    assert base["verdict"].startswith("out of regime: gap closed by pseudo 0.03 (0.02-0.04)") and base["failed"]
    assert on_mmt["verdict"] == "holds" and not on_mmt["failed"]  # its premises hold or were not measured
    assert base["needed"] == on_mmt["needed"] == 3  # sd 0.5: three seeds reach +-1.5
    undecided = {r["claim"].text: r for r in evaluate(CLAIMS, recs)}  # no regime given: every claim decided
    assert undecided["+CANU beats the base method (baseline)"]["verdict"] == "holds"
    table = markdown(list(rows.values()))
    assert "| **+CANU beats the base method (MMT)** |" in table and "| 3 | 1.2 | 3 | holds |" in table


def test_key_claims_are_the_issue_of_record():
    from canu_plugin.bench.claims import CLAIMS
    from canu_plugin.bench.criteria import criteria
    key = {(c.a, c.b) for c in CLAIMS if c.key}
    assert key == {("canu_mmt", "mmt"), ("adv_mmt", "mmt"), ("canu_mmt", "adv_mmt"), ("canu_ssg", "ssg"),
                   ("canu", "pseudo"), ("canu", "adv"), ("acan_grl", "acan_triplet"), ("acan_oce", "acan_triplet"),
                   ("acan_ace", "acan_triplet"),  # the papers' (above), the camera-normalization rivals' (below)
                   ("canu", "pseudo_cn"), ("canu_mmt", "mmt_cn"), ("canu_cn", "canu"), ("canu_cn", "pseudo_cn")}
    keys = {r["key"] for r in criteria({})}
    assert all(c.premises and set(c.premises) <= keys for c in CLAIMS)  # every premise is a criterion




def test_testbed_report_decides_claims_against_its_premises(tmp_path):
    from canu_plugin.bench.candidates import testbed_folder
    from canu_plugin.bench.testbed import load_testbed
    from canu_plugin.cli.bench import bench
    testbed = os.path.join(REPO, "configs", "synthetic", "testbeds", "generic-effects-060-mmt-recipe.yml")
    folder = testbed_folder(str(tmp_path), load_testbed(testbed))
    os.makedirs(folder)
    for s, (src, up, base) in enumerate([(30.0, 80.0, 32.0), (25.0, 75.0, 27.0)]):
        for m, v in (("source", src), ("upper", up), ("pseudo", base), ("canu", base + 1.0 + s)):
            with open(os.path.join(folder, f"{m}_s{s}.json"), "w") as f:
                json.dump(bench_record(m, s, v), f)
    assert bench(["--testbed", testbed, "--report-only", "--output", str(tmp_path), "--seeds", "0", "1",
                  "--methods", "source", "upper", "pseudo", "canu"]) == 0
    text = open(os.path.join(folder, "results.md")).read()
    assert "## The testbed's regime" in text and "| gap closed by pseudo | 0.04 (0.04-0.04) | fails |" in text
    assert "out of regime: gap closed by pseudo 0.04" in text
    assert "| MMT - baseline mAP (reported) | - | not measured |" in text  # no MMT run
    summary = json.load(open(os.path.join(folder, "summary.json")))
    claim = next(c for c in summary["claims"] if c["claim"] == "+CANU beats the base method (baseline)")
    assert claim["key"] and claim["failed_premises"] and claim["seeds_needed"] is not None
    assert summary["seed_plan"] is None  # the only key claim is out of regime: no seeds to plan


def test_seed_plan_predicts_the_seeds_and_core_hours_of_the_key_claims():
    from canu_plugin.bench.claims import CLAIMS, evaluate
    from canu_plugin.bench.report import plan_text, seed_plan
    recs = {}
    for s, d in enumerate([1.0, 4.0, 7.0]):  # canu - pseudo: sd 3 -> 18 seeds for +-1.5 (t 2.11 * 3 / sqrt 18)
        recs[("pseudo", s)] = dict(bench_record("pseudo", s, 20.0), wall_s=1800.0, identity={"threads": 1})
        recs[("canu", s)] = dict(bench_record("canu", s, 20.0 + d), wall_s=1800.0, identity={"threads": 2})
    plan = seed_plan(evaluate(CLAIMS, recs), recs)
    assert plan["needed"] == 18 and plan["seeds"] == 3 and plan["claim"] == "+CANU beats the base method (baseline)"
    assert plan["core_s_per_seed"] == pytest.approx(5400.0) and plan["more_core_h"] == pytest.approx(15 * 1.5)
    assert plan["more"] == 15 and plan["short"] == {"+CANU beats the base method (baseline)": 15}
    assert "22.5 core-hours" in plan_text(plan) and plan_text(None) == ""
    # a second key claim that needs fewer seeds: only the first seeds run its methods (and the source model)
    for s, d in enumerate([2.0, 3.0, 4.0]):  # acan_oce - acan_triplet: sd 1 -> 5 seeds (t 2.78 / sqrt 5 = 1.24)
        recs[("acan_triplet", s)] = dict(bench_record("acan_triplet", s, 20.0, family="acan"), wall_s=100.0,
                                         identity={"threads": 1})
        recs[("acan_oce", s)] = dict(bench_record("acan_oce", s, 20.0 + d, family="acan"), wall_s=200.0,
                                     identity={"threads": 1})
        recs[("source", s)] = dict(bench_record("source", s, 10.0, family="source"), wall_s=360.0, identity={"threads": 1})
    plan = seed_plan(evaluate(CLAIMS, recs), recs)
    short = plan["short"]
    assert short["+CANU beats the base method (baseline)"] == 15 and short["ACAN-OCE beats triplet only"] == 2
    assert plan["more_core_h"] == pytest.approx((15 * (5400.0 + 360.0) + 2 * 300.0) / 3600.0)  # ACAN: no source
    # MMT's second source model (seed s + 100) is part of seed s's cost, not a seed of its own
    for s in range(3):
        recs[("source_b", 100 + s)] = dict(bench_record("source_b", 100 + s, 10.0, family="source"), wall_s=40.0,
                                           identity={"threads": 1})
    assert seed_plan(evaluate(CLAIMS, recs), recs)["core_s_per_seed"] == pytest.approx(5400.0 + 660.0 + 40.0)
    # a key claim whose differences spread too far for any number of seeds the plan looks at: "> 200"
    for s, d in enumerate([0.0, 100.0, -100.0]):
        recs[("acan_grl", s)] = bench_record("acan_grl", s, 20.0 + d, family="acan")
    from canu_plugin.bench.claims import markdown
    row = next(line for line in markdown(evaluate(CLAIMS, recs)).splitlines() if "ACAN-GRL beats" in line)
    assert "| > 200 |" in row
    plan = seed_plan(evaluate(CLAIMS, recs), recs)
    assert plan["beyond"] == ["ACAN-GRL beats triplet only"] and "more than 200 seeds (ACAN-GRL" in plan_text(plan)
