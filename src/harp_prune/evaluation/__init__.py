"""Evaluation: natural/robust accuracy with counted sparsity as JSON-ready data, and tables."""

from harp_prune.evaluation.report import comparison_table, layer_table
from harp_prune.evaluation.robustness import describe_attack, evaluate_model

__all__ = ["comparison_table", "describe_attack", "evaluate_model", "layer_table"]
