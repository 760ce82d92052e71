"""Evaluation: exact chunked retrieval metrics (:mod:`.metrics`), features -> metrics and the
fast-reid evaluator built on them (:mod:`.evaluator`); pseudo-label diagnostics in :mod:`.diagnostics`."""
from canu_plugin.evaluation.evaluator import (METRICS, CanuReidEvaluator, evaluate, feature_blocks,
                                              prepare_features, query_expansion, rerank_blocks)
from canu_plugin.evaluation.metrics import evaluate_dist, rank_metrics, resolve_device

__all__ = ["CanuReidEvaluator", "evaluate", "evaluate_dist", "rank_metrics", "prepare_features", "feature_blocks",
           "query_expansion", "rerank_blocks", "resolve_device", "METRICS"]
