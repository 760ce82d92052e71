"""PSEUDO.TRAIN_SOURCE: the labelled source trained beside the target's clusters (OpenUnReID's
strong baseline, without domain-specific BN): source identities are classes K.. K+S-1, initialised
from their mean features, and their images reach the batches."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from canu_plugin.data.pseudo_labels import PseudoLabels, SourceSet
from canu_plugin.engine.features import extract_features
from canu_plugin.engine.hooks import ClusteringHook
from canu_plugin.engine.label_generator import LabelGenerator
from canu_plugin.errors import CanuError
from conftest import FAST_CLUSTERING, kill_and_resume

QUICK = "configs/synthetic/quick_pseudo.yml"
JOINT = ["DATASETS.NAMES", '("SynthB",)', "DATASETS.TESTS", '("SynthB",)', "PSEUDO.TRAIN_SOURCE", "True",
         "PSEUDO.SOURCE_DATASETS", '("SynthA",)', *FAST_CLUSTERING]


def test_source_identities_follow_the_clusters_in_the_classifier_and_the_labels(tiny_trainer, tmp_path):
    trainer = tiny_trainer(QUICK, tmp_path, *JOINT)
    model, cfg, source = trainer.unwrapped_model, trainer.cfg, trainer.source_set
    assert source.num_ids == 16 and len(source) > 0
    pseudo = LabelGenerator(cfg, trainer.target_set, source=source)(model, 0)
    k = pseudo.num_clusters
    # the source centroids: the mean normalised feature of each source identity, computed here independently
    feats = extract_features(model, source.items(), cfg, normalize=True).numpy()
    expected = np.stack([feats[source.labels == s].mean(0) for s in range(source.num_ids)])
    np.testing.assert_allclose(pseudo.source_centroids.numpy(), expected, atol=1e-5)
    model.install_clusters(pseudo)
    rows = model.classifier_weights()[0]
    assert rows.shape == (k + source.num_ids, expected.shape[1])
    torch.testing.assert_close(rows[k:].detach().cpu(), F.normalize(torch.as_tensor(expected), dim=1), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(model.centroids.cpu(), pseudo.centroids)  # CANU's conditioning: the clusters only


def test_tiny_joint_run_trains_on_both_sets(tiny_trainer, tmp_path):
    trainer = tiny_trainer(QUICK, tmp_path, *JOINT, "SOLVER.MAX_EPOCH", "1", "PSEUDO.ITERS_PER_EPOCH", "0")
    source_paths = set(trainer.source_set.paths)
    # an epoch counts both sets: (N + M) // batch iterations
    assert trainer.iters_per_epoch == (len(trainer.target_set) + len(trainer.source_set)) // 16
    seen = []
    trainer.unwrapped_model.register_forward_pre_hook(
        lambda module, args: seen.extend(args[0]["img_paths"]) if module.training else None)
    trainer.train()
    pseudo = next(h for h in trainer._hooks if isinstance(h, ClusteringHook)).pseudo
    k, s = pseudo.num_clusters, trainer.source_set.num_ids
    assert source_paths & set(seen) and set(seen) - source_paths  # both sets reach the batches
    items = trainer.data_loader.dataset.img_items
    source_labels = {lab for p, lab, _ in items if p in source_paths}
    assert source_labels == set(range(k, k + s))  # every source identity, after the clusters
    assert {lab for p, lab, _ in items if p not in source_paths} <= set(range(k))
    assert trainer.unwrapped_model.classifier_weights()[0].shape[0] == k + s
    assert min(c for p, _, c in items if p in source_paths) >= trainer.target_set.num_cameras


def test_source_centroids_are_saved_with_the_labels():
    pseudo = PseudoLabels(labels=np.array([0, 1, -1]), centroids=torch.eye(2), epoch=3,
                          source_centroids=torch.ones(4, 2))
    back = PseudoLabels.from_state_dict(pseudo.state_dict())
    torch.testing.assert_close(back.source_centroids, pseudo.source_centroids)
    assert back.classifier_centroids.shape == (6, 2)
    assert PseudoLabels.from_state_dict({**pseudo.state_dict(), "source_centroids": None}).source_centroids is None


@pytest.mark.parametrize("config, opts, names", [
    (QUICK, ["PSEUDO.SOURCE_DATASETS", "()"], "PSEUDO.SOURCE_DATASETS is empty"),
    ("configs/synthetic/quick_mmt.yml", [], "only PseudoBaseline can"),
    (QUICK, ["MODEL.CANU.ENABLED", "True"], "not combined with a camera discriminator"),
])
def test_unsupported_combinations_are_refused_with_the_fix(tiny_trainer, tmp_path, config, opts, names):
    with pytest.raises(CanuError, match=names) as e:
        tiny_trainer(config, tmp_path, *JOINT, *opts)
    assert "PSEUDO.TRAIN_SOURCE False" in str(e.value)


def test_empty_source_set_is_refused():
    with pytest.raises(CanuError, match="source training set is empty"):
        SourceSet([])


def test_resume_of_a_joint_run_repeats_the_uninterrupted_one(tiny_trainer, tmp_path):
    """Killed during epoch 1, resumed: the same clusters, source centroids and weights (K + S rows)."""
    a, b = kill_and_resume(lambda out: tiny_trainer(QUICK, out, *JOINT), tmp_path)
    assert torch.equal(a["pseudo_labels"]["labels"], b["pseudo_labels"]["labels"])
    torch.testing.assert_close(a["pseudo_labels"]["source_centroids"], b["pseudo_labels"]["source_centroids"])
    k, s = a["pseudo_labels"]["centroids"].shape[0], a["pseudo_labels"]["source_centroids"].shape[0]
    assert a["model"]["heads.weight"].shape[0] == k + s == b["model"]["heads.weight"].shape[0]
    for key in ("backbone.conv1.weight", "heads.weight"):
        assert torch.allclose(a["model"][key], b["model"][key], atol=1e-5), key
