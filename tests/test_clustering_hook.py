"""ClusteringHook inside a real (tiny) fast-reid trainer on CPU: update order, classifier
re-sizing, diagnostics log, kill-and-resume, 2-process DDP, and the failure modes."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from canu_plugin.engine import Trainer, seed_from_config, set_datasets_root, setup_cfg
from canu_plugin.engine.hooks import ClusteringHook
from canu_plugin.engine.run_files import epoch_records, read_final_results
from canu_plugin.errors import CanuError
from fastreid.engine.train_loop import HookBase

from conftest import kill_and_resume, launch_watched

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "configs/synthetic/quick_pseudo.yml"
FAST = ["CLUSTERING.K1", "10", "CLUSTERING.K2", "3", "TEST.EVAL_PERIOD", "100"]


@pytest.fixture
def make_trainer(tiny_trainer):
    return lambda out, *opts: tiny_trainer(QUICK, out, *FAST, *opts)


class Probe(HookBase):
    """Registered after the ClusteringHook: records what the trainer looks like before step 0."""

    def __init__(self):
        self.seen = []

    def before_epoch(self):
        t = self.trainer
        pseudo = next(h for h in t._hooks if isinstance(h, ClusteringHook)).pseudo
        head = t.unwrapped_model.heads
        items = t.data_loader.dataset.img_items
        by_path = dict(zip(t.target_set.paths, pseudo.labels))
        self.seen.append({
            "labels": pseudo.labels.copy(),
            "loader_matches": all(by_path[p] == lab and lab >= 0 for p, lab, _ in items),
            "loader_size": len(items),
            "head_rows": head.weight.shape[0],
            "head_is_centroids": torch.allclose(head.weight.detach(), F.normalize(pseudo.centroids, dim=1), atol=1e-6),
            "in_optimizer": any(p is head.weight for g in t.optimizer.param_groups for p in g["params"]),
            "fresh_state": head.weight not in t.optimizer.state,
            "model_centroids": torch.equal(t.unwrapped_model.centroids, pseudo.centroids),
        })


def test_hook_installs_labels_loader_classifier_and_optimizer_in_order(make_trainer, tmp_path):
    trainer = make_trainer(tmp_path)
    probe = Probe()
    trainer.register_hooks([probe])
    trainer.train()
    assert len(probe.seen) == 2
    for s in probe.seen:
        k = len(set(s["labels"][s["labels"] >= 0].tolist()))
        assert s["head_rows"] == k and s["loader_size"] == int((s["labels"] >= 0).sum())
        assert s["loader_matches"] and s["head_is_centroids"] and s["in_optimizer"] and s["fresh_state"]
        assert s["model_centroids"]
    log = epoch_records(tmp_path)["pseudo"]  # read back from metrics.json
    assert [r["epoch"] for r in log] == [0, 1]
    assert {"num_clusters", "mi_cam", "nmi_gt", "lost_ids", "purity", "clustering_knn_s", "cam_probe"} <= set(log[0])
    assert 0.0 <= log[0]["cam_probe"] <= 1.0
    assert log[0]["num_clusters"] == probe.seen[0]["head_rows"]


class AdamMoments(HookBase):
    """After the clustering hook, at each epoch start: the summed Adam moments of the first conv."""

    def __init__(self):
        self.seen = []

    def before_epoch(self):
        state = self.trainer.optimizer.state.get(self.trainer.unwrapped_model.backbone.conv1.weight, {})
        self.seen.append(sum(float(state[k].abs().sum()) for k in ("exp_avg", "exp_avg_sq") if k in state))


@pytest.mark.parametrize("reset", [True, False])
def test_each_clustering_restarts_the_baselines_adam_as_mmts_code(make_trainer, tmp_path, reset):
    """PSEUDO.RESET_OPTIMIZER (MMT's clustering baseline builds a new Adam at every clustering): the
    backbone's moments are zero right after the second clustering, and kept with False."""
    trainer = make_trainer(tmp_path, "PSEUDO.RESET_OPTIMIZER", str(reset))
    assert trainer.unwrapped_model.resets_optimizer_state is reset
    probe = AdamMoments()
    trainer.register_hooks([probe])
    trainer.train()
    assert probe.seen[0] == 0.0  # nothing trained before the first clustering
    assert (probe.seen[1] == 0.0) is reset


def test_resume_repeats_the_uninterrupted_pseudo_labels(make_trainer, tmp_path):
    a, b = kill_and_resume(make_trainer, tmp_path)  # killed during epoch 1
    assert torch.equal(a["pseudo_labels"]["labels"], b["pseudo_labels"]["labels"])
    assert a["pseudo_labels"]["epoch"] == 1
    for k in ("backbone.conv1.weight", "heads.weight"):
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k


@pytest.mark.parametrize("rule, opts, advice", [
    ("fixed", ["CLUSTERING.EPS", "0.01"], "raise CLUSTERING.EPS"),           # every sample an outlier
    ("fixed", ["CLUSTERING.EPS", "0.99"], "lower CLUSTERING.EPS"),           # one cluster of everything
    ("quantile_once", ["CLUSTERING.RHO", "0.0001"], "raise CLUSTERING.RHO"),  # MMT / SSG: EPS is not read
    ("quantile_once", ["CLUSTERING.RHO", "0.9"], "lower CLUSTERING.RHO"),
])
def test_too_few_clusters_at_the_start_names_the_key_that_helps(make_trainer, tmp_path, rule, opts, advice):
    trainer = make_trainer(tmp_path, "CLUSTERING.EPS_RULE", rule, *opts)
    with pytest.raises(CanuError, match=r"found [01] clusters") as err:
        trainer.train()
    msg = str(err.value)
    assert advice in msg
    merged = advice.startswith("lower")
    assert ("largest holds" in msg and "CLUSTERING.K1" in msg) == merged
    assert ("Most samples are outliers" in msg and "lower CLUSTERING.MIN_SAMPLES" in msg) == (not merged)
    if rule != "fixed":  # the first clustering's eps comes from RHO: EPS must not be suggested
        assert "CLUSTERING.EPS (now" not in msg and "CLUSTERING.EPS is not used" in msg


def test_advice_for_a_later_quantile_once_clustering_says_the_eps_is_kept():
    from canu_plugin.clustering.advice import too_few_clusters_advice
    from canu_plugin.engine import setup_cfg
    c = setup_cfg(os.path.join(REPO, QUICK), ["CLUSTERING.EPS_RULE", "quantile_once"]).CLUSTERING
    msg = too_few_clusters_advice(c, np.full(10, -1), eps=0.2, first=False)
    assert "raise CLUSTERING.RHO" in msg and "keeps the first clustering's eps" in msg and "(this one: 0.2000)" in msg


def test_later_failure_keeps_the_last_labels(make_trainer, tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    import canu_plugin.clustering as clustering
    real = clustering.cluster
    calls = []

    def flaky(feats, cfg, return_info=False, **kw):
        calls.append(1)
        labels, centroids, info = real(feats, cfg, return_info=True, **kw)
        if len(calls) == 2:  # second epoch: everything is an outlier
            labels, centroids = np.full_like(labels, -1), centroids[:0]
        return labels, centroids, info
    monkeypatch.setattr(clustering, "cluster", flaky)
    probe = Probe()
    trainer.register_hooks([probe])
    trainer.train()
    assert np.array_equal(probe.seen[0]["labels"], probe.seen[1]["labels"])
    assert [r["kept_previous"] for r in epoch_records(tmp_path)["pseudo"]] == [0.0, 1.0]


def _ddp_run(out, root):
    set_datasets_root(root)
    cfg = setup_cfg(os.path.join(REPO, QUICK), FAST + ["SOLVER.MAX_EPOCH", "1", "SEED", "0", "OUTPUT_DIR", out])
    seed_from_config(cfg)  # as canu-train does: the same clusters in every run of the test
    trainer = Trainer(cfg)
    trainer.train()
    pseudo = next(h for h in trainer._hooks if isinstance(h, ClusteringHook)).pseudo
    rank = torch.distributed.get_rank()
    torch.save({"labels": torch.from_numpy(pseudo.labels), "centroids": pseudo.centroids,
                "iters": trainer.iter}, os.path.join(out, f"rank{rank}.pt"))


@pytest.mark.timeout(300)
def test_two_processes_share_the_same_pseudo_labels(synth_root, tmp_path):
    launch_watched(_ddp_run, (str(tmp_path), synth_root))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["labels"], r1["labels"]) and torch.equal(r0["centroids"], r1["centroids"])
    assert (r0["labels"] >= 0).sum() > 0 and r0["iters"] == r1["iters"] == 3


def _ddp_sharded(out, root):
    from canu_plugin.engine.features import extract_features
    set_datasets_root(root)
    cfg = setup_cfg(os.path.join(REPO, QUICK), FAST + ["CLUSTERING.KNN_SHARDED", "on", "CLUSTERING.KNN_BACKEND",
                                                       "torch", "OUTPUT_DIR", out])
    trainer = Trainer(cfg)
    generator = next(h for h in trainer._hooks if isinstance(h, ClusteringHook)).generator
    module = trainer.unwrapped_model
    feats = extract_features(trainer.model, trainer.target_set.items(), trainer.cfg, normalize=False)
    views = module.cluster_views(feats) if torch.distributed.get_rank() == 0 else None
    knn = generator._sharded_knn(views)  # every rank searches its share
    if torch.distributed.get_rank() == 0:
        sharded = generator._cluster(module, views, None, None, knn)[0]
        plain = generator._cluster(module, views, None, None)[0]
        torch.save({"sharded": torch.from_numpy(sharded), "plain": torch.from_numpy(plain)}, os.path.join(out, "labels.pt"))
    else:
        assert knn == [None]


@pytest.mark.timeout(300)
def test_two_processes_shard_the_knn_and_get_rank0s_labels(synth_root, tmp_path):
    launch_watched(_ddp_sharded, (str(tmp_path), synth_root))
    res = torch.load(tmp_path / "labels.pt")
    assert torch.equal(res["sharded"], res["plain"]) and (res["plain"] >= 0).sum() > 0


def test_fully_unsupervised_quick_config_trains_from_a_random_start(tiny_trainer, tmp_path):
    """USL: no source model, the camera discriminator on pseudo-labels of a random initialisation."""
    trainer = tiny_trainer("configs/synthetic/quick_usl.yml", tmp_path)
    assert not trainer.cfg.MODEL.WEIGHTS and trainer.cfg.MODEL.CANU.ENABLED
    trainer.train()
    pseudo = next(h for h in trainer._hooks if isinstance(h, ClusteringHook)).pseudo
    assert pseudo.num_clusters >= 2 and "loss_cam_adv" in trainer.storage.histories()
    assert read_final_results(tmp_path)["epoch"] == 2
