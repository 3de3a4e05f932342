"""Latency/resource estimator for hls4ml designs and the budget check (docs/estimator.md)."""

from trigger.estimate.budget import BudgetResult, budget_table, check_budget, part_resources
from trigger.estimate.model import (
    Estimate,
    LayerCost,
    LayerEstimate,
    Op,
    estimate_model,
    register_layer_estimator,
)
from trigger.estimate.params import Params, load_params

__all__ = [
    "BudgetResult",
    "Estimate",
    "LayerCost",
    "LayerEstimate",
    "Op",
    "Params",
    "budget_table",
    "check_budget",
    "estimate_model",
    "load_params",
    "part_resources",
    "register_layer_estimator",
]
