"""Model families: each adds a model builder, its metrics and its config to the one pipeline."""

from __future__ import annotations

import importlib

from trigger.errors import ConfigError
from trigger.families.base import ModelFamily, Prepared, Split

# family name -> "module:Class"; imported lazily so a config error never waits for TensorFlow.
FAMILIES: dict[str, str] = {
    "jet_tagger": "trigger.families.jet_tagger:JetTagger",
    "autoencoder": "trigger.families.anomaly:Autoencoder",
    "vae": "trigger.families.anomaly:VariationalAutoencoder",
    "spanet": "trigger.families.spanet:SpaNet",
}


def family_class(name: str) -> type[ModelFamily]:
    """The class registered for `model.family`."""
    if name not in FAMILIES:
        raise ConfigError("model.family", f"unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["FAMILIES", "ModelFamily", "Prepared", "Split", "family_class"]
