"""Shared fixtures: the repository root, the shared example models, and small configs for end-to-end runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as the CLI sets it

ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = ROOT.parent / "shared" / "models"


@pytest.fixture
def root() -> Path:
    return ROOT


def _merge(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` on top of `config`, merging mappings key by key (so a test changes one field only)."""
    out = dict(config)
    for key, value in overrides.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


# Small configs of the other families, for `trigger compile` in the default test run: each trains for a few
# epochs on part of a shipped dataset and compiles in well under a minute on 2 cores.
SMALL_FAMILY_CONFIGS: dict[str, dict[str, Any]] = {
    "autoencoder": {
        "name": "ci_autoencoder",
        "model": {"family": "autoencoder", "architecture": {"encoder": [16], "latent": 4, "decoder": [16]}},
        "quantization": {"input": {"bits": 12, "integer": 6},
                         "default": {"weight": {"bits": 8, "integer": 1}, "bias": {"bits": 8, "integer": 3},
                                     "activation": {"bits": 10, "integer": 5}},
                         "layers": {"latent": {"activation": {"bits": 10, "integer": 4}}}},
        "data": {"file": str(ROOT / "data" / "zerobias.h5"), "max_events": 20000, "fractions": [0.4, 0.1, 0.5]},
        "training": {"epochs": 4, "batch_size": 512, "seed": 1, "float_twin": False},
        "pruning": {"enabled": True, "target_sparsity": 0.3, "epochs": 2},
        "equivalence": {"min_events": 5000},
        "budget": {"latency_ns": 1000},
        "evaluation": {"rates_khz": [1000, 4000]},  # >= 50 calibration events pass each
    },
    "vae": {
        "name": "ci_vae",
        "model": {"family": "vae", "architecture": {"encoder": [16], "latent": 4, "decoder": [16]}},
        "quantization": {"input": {"bits": 12, "integer": 6},
                         "default": {"weight": {"bits": 8, "integer": 1}, "bias": {"bits": 8, "integer": 3},
                                     "activation": {"bits": 10, "integer": 5}},
                         "layers": {"mu": {"activation": {"bits": 10, "integer": 4}}}},
        "data": {"file": str(ROOT / "data" / "l1.h5"), "max_events": 20000, "fractions": [0.4, 0.1, 0.5]},
        "training": {"epochs": 4, "batch_size": 512, "seed": 1, "float_twin": True, "init_from_float": True},
        "pruning": {"enabled": False},
        "equivalence": {"min_events": 5000},
        "budget": {"latency_ns": 1000},
        "evaluation": {"rates_khz": [1000, 4000]},  # >= 50 calibration events pass each
    },
    "spanet": {
        "name": "ci_spanet",
        "model": {"family": "spanet", "architecture": {"max_jets": 10, "embed": [8], "head_dim": 4, "rank": 2},
                  "preprocessing": {"augment": 0}},
        "quantization": {"input": {"bits": 16, "integer": 5},
                         "default": {"weight": {"bits": 8, "integer": 1}, "bias": {"bits": 10, "integer": 3},
                                     "activation": {"bits": 14, "integer": 5}}},
        "data": {"file": str(ROOT / "data" / "ttbar.h5"), "max_events": 6000},
        "training": {"epochs": 3, "batch_size": 256, "learning_rate": 0.002, "seed": 1, "float_twin": False},
        "pruning": {"enabled": False},
        "equivalence": {"min_events": 1000},
        "budget": {"latency_ns": 2000},
    },
}


def small_family_config(tmp_path: Path, family: str, **overrides: Any) -> Path:
    """A small config of `family` (autoencoder, vae, spanet) writing into `tmp_path`."""
    config = _merge(SMALL_FAMILY_CONFIGS[family], {
        "output": {"projects_dir": str(tmp_path / "hls_projects"), "scripts_dir": str(tmp_path / "vivado_scripts")},
        **overrides})
    path = tmp_path / f"{family}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


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


def tiny_jet_config(tmp_path: Path, **overrides: Any) -> Path:
    """`small_jet_config` cut down for scans, where CI compiles several points: a 16-8-5 tagger, 3000 events,
    two short epochs and no float twin, so a point is mostly its two g++ builds."""
    tiny: dict[str, Any] = {
        "model": {"family": "jet_tagger", "architecture": {"hidden": [8]}},
        "data": {"max_events": 3000},
        "training": {"epochs": 2, "batch_size": 64, "learning_rate": 0.01, "float_twin": False},
        "pruning": {"epochs": 2},
        "equivalence": {"min_events": 1000},
    }
    return small_jet_config(tmp_path, **_merge(tiny, overrides))


def spanet_csim_matches(firmware: Any, cfg: Any, family: Any, x: list[Any], out_dir: Path) -> tuple[Any, Any]:
    """Convert a SPA-Net firmware model with hls4ml, compile its C simulation and assert it equals the Keras
    firmware model and the design interpreter on `x` event by event; returns (C simulation outputs, design)."""
    import hls4ml
    import numpy as np

    from trigger.convert import hls_config
    from trigger.design import lower, run

    hls_model = hls4ml.converters.convert_from_keras_model(
        firmware, hls_config=hls_config(firmware, cfg, family), output_dir=str(out_dir),
        backend=cfg.hls.backend, part=cfg.hls.part, clock_period=cfg.hls.clock_period_ns, io_type=cfg.hls.io_type)
    hls_model.compile()
    events = len(x[0])
    sim = np.asarray(hls_model.predict(x)).reshape(events, 8)
    keras_out = firmware.predict(x, batch_size=1024, verbose=0)
    design = lower(hls_model, meta={"family": "spanet", "backend": cfg.hls.backend})
    emulated = run(design, x)[0]
    for what, other in (("Keras firmware model", keras_out), ("design interpreter", emulated)):
        differ = np.flatnonzero(np.any(other != sim, axis=1))
        assert differ.size == 0, f"C simulation vs {what}: {differ.size} of {events} events differ"
    return sim, design


def on_input_port(values: Any, cfg: Any) -> Any:
    """Values on the input port's grid and range, as the pipeline feeds a model (`quantization.input`)."""
    from trigger.fixed_point import to_grid

    return to_grid(values, cfg.quantization.input).values
