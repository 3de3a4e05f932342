"""Training is reproducible from the seed; pruning reaches and verifies its target on real jets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trigger.config import parse_config
from trigger.data import load
from trigger.errors import CheckFailed
from trigger.families.jet_tagger import JetTagger
from trigger.prune import kernel_sparsity, prune
from trigger.train import train

JETS = Path(__file__).resolve().parents[1] / "data" / "jets.h5"


def _setup(**pruning: object) -> tuple:
    cfg = parse_config({"name": "t", "model": {"family": "jet_tagger", "architecture": {"hidden": [16, 8]}},
                        "data": {"file": str(JETS)}, "training": {"epochs": 2, "batch_size": 256, "seed": 5},
                        "pruning": {"target_sparsity": 0.6, "epochs": 3, **pruning}})
    family = JetTagger(cfg)
    return cfg, family, family.prepare(load(JETS, max_events=3000))


def test_training_is_reproducible_from_the_seed() -> None:
    cfg, family, data = _setup()
    first, _ = train(family, data, cfg.training, quantized=True)
    second, _ = train(family, data, cfg.training, quantized=True)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_pruning_reaches_and_verifies_the_target() -> None:
    cfg, family, data = _setup()
    model, _ = train(family, data, cfg.training, quantized=True)
    result = prune(model, family, data, cfg.pruning, cfg.training, quantized=True)
    assert result.overall >= 0.59
    assert set(result.layer_sparsity) == {"fc1", "fc2", "output"}
    assert kernel_sparsity(result.model) == (result.layer_sparsity, result.overall)
    assert not any("prune" in layer.name for layer in result.model.layers)  # wrappers stripped
    assert [type(layer).__name__ for layer in result.model.layers].count("QDense") == 3


def test_pruning_short_of_target_fails() -> None:
    cfg, family, data = _setup(schedule="polynomial_decay", frequency=10**6, initial_sparsity=0.0)
    model, _ = train(family, data, cfg.training, quantized=True)
    # One pruning step at most: the end of the schedule is never reached, which must not pass silently.
    import dataclasses

    tiny = dataclasses.replace(cfg.pruning, epochs=1)
    short = dataclasses.replace(data, train=data.train.take(slice(0, 256)))
    with pytest.raises(CheckFailed, match=r"pruning.target_sparsity: reached"):
        prune(model, family, short, tiny, cfg.training, quantized=True)


def test_quantized_training_can_start_from_the_float_twin() -> None:
    import dataclasses

    cfg, family, data = _setup()
    float_model, _ = train(family, data, cfg.training, quantized=False)
    frozen = dataclasses.replace(cfg.training, learning_rate=1e-12, epochs=1)
    quantized, _ = train(family, data, frozen, quantized=True, start_from=float_model)
    for name in ("fc1", "fc2", "output"):
        for q, f in zip(quantized.get_layer(name).get_weights(), float_model.get_layer(name).get_weights(),
                        strict=True):
            np.testing.assert_allclose(q, f, atol=1e-6)
