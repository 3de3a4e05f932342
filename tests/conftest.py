"""Shared fixtures: the repository root, the shared example models, and small configs for end-to-end runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = ROOT.parent / "shared" / "models"


@pytest.fixture
def root() -> Path:
    return ROOT


def small_jet_config(tmp_path: Path, **overrides: Any) -> Path:
    """A jet-tagger config small enough for CI: a 16-16-8-5 tagger trained briefly on part of the shipped jets."""
    config: dict[str, Any] = {
        "name": "ci_tagger",
        "model": {"family": "jet_tagger", "architecture": {"hidden": [16, 8]}},
        "data": {"file": str(ROOT / "data" / "jets.h5"), "max_events": 8000},
        "training": {"epochs": 4, "batch_size": 256, "seed": 1, "float_twin": True},
        "pruning": {"enabled": True, "target_sparsity": 0.5, "epochs": 3},
        "equivalence": {"min_events": 2000},
        "budget": {"latency_ns": 1000},
        "output": {"projects_dir": str(tmp_path / "hls_projects"), "scripts_dir": str(tmp_path / "vivado_scripts")},
    }
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
