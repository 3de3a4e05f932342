"""Latency/resource estimator of designs (`trigger.design`) and the budget check (docs/estimator.md)."""

from trigger.estimate.budget import (
    BudgetResult,
    budget_table,
    check_budget,
    estimate_margin,
    part_resources,
    with_margin,
)
from trigger.estimate.model import (
    Estimate,
    LayerCost,
    LayerEstimate,
    Op,
    estimate_design,
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
    "estimate_design",
    "estimate_margin",
    "load_params",
    "part_resources",
    "register_layer_estimator",
    "with_margin",
]
