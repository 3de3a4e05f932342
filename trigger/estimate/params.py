"""Loads the estimator's one data file, so every number the model uses is reviewable in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from trigger.errors import InputError

PARAMS_FILE = Path(__file__).with_name("params.yaml")


class Params(dict):
    """The parsed params.yaml; `p("timing", "add_ns")` reads a nested value and names it when missing."""

    def __call__(self, *keys: str) -> Any:
        node: Any = self
        for i, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                raise InputError(f"{PARAMS_FILE}: missing parameter {'.'.join(keys[: i + 1])}")
            node = node[key]
        return node


@lru_cache(maxsize=4)
def load_params(path: Path = PARAMS_FILE) -> Params:
    """Parse the parameter file once per process."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read estimator parameters ({exc})") from exc
    if not isinstance(raw, dict):
        raise InputError(f"{path}: estimator parameters must be a mapping")
    return Params(raw)
