"""Evaluation: natural/robust accuracy with counted sparsity as JSON-ready data, and tables."""

from harp_prune.evaluation.report import budget_line, comparison_table, layer_table
from harp_prune.evaluation.robustness import describe_attack, evaluate_model, gather
from harp_prune.evaluation.sanity import balanced_accuracy, eps_sweep, parse_multiples, spread_subset

__all__ = ["balanced_accuracy", "budget_line", "comparison_table", "describe_attack", "eps_sweep", "evaluate_model",
           "gather", "layer_table", "parse_multiples", "spread_subset"]
