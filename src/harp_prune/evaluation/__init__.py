"""Evaluation: natural/robust accuracy with counted sparsity as JSON-ready data, and tables.

``evaluate_robustness`` evaluates any model in one call, without a RunConfig.
"""

from harp_prune.evaluation.benchmark import build_attacks, evaluate_robustness, evaluation_record, sweep_loader
from harp_prune.evaluation.chunks import Split, evaluate_in_chunks, gather, seeded
from harp_prune.evaluation.report import budget_line, comparison_table, layer_table
from harp_prune.evaluation.robustness import describe_attack, evaluate_model, whole_set_result
from harp_prune.evaluation.sanity import (
           balanced_accuracy,
           eps_sweep,
           parse_multiples,
           spread_subset,
           sweep_hits,
           sweep_report,
)

__all__ = ["Split", "balanced_accuracy", "budget_line", "build_attacks", "comparison_table", "describe_attack",
           "eps_sweep", "evaluate_in_chunks", "evaluate_model", "evaluate_robustness", "evaluation_record", "gather",
           "layer_table", "parse_multiples", "seeded", "spread_subset", "sweep_hits", "sweep_loader", "sweep_report",
           "whole_set_result"]
