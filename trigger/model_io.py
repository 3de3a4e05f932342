"""Loading models that users trained elsewhere (`trigger compile CONFIG --model FILE`).

Accepted: a full Keras/QKeras model in `.h5`, or an architecture `.json` with its weights in an `.h5`
beside it (`<stem>_weights.h5` or `<stem>.h5`, or named with `--weights`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trigger.errors import InputError

if TYPE_CHECKING:
    from tensorflow import keras


def _custom_objects(extra: dict[str, Any]) -> dict[str, Any]:
    from qkeras.utils import _add_supported_quantized_objects

    objects: dict[str, Any] = {}
    _add_supported_quantized_objects(objects)
    objects.update(extra)
    return objects


def _first_line(message: str) -> str:
    return message.splitlines()[0]


def _layers(config: Any) -> list[tuple[str, str]]:
    """(name, class) of every layer in a Keras model config, nested models included."""
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner.get("layers", []) if isinstance(inner, dict) else []
    found: list[tuple[str, str]] = []
    for layer in layers:
        if isinstance(layer, dict) and "class_name" in layer:
            found.append((str((layer.get("config") or {}).get("name", "?")), str(layer["class_name"])))
            found += _layers(layer)
    return found


def _model_config(path: Path) -> Any:
    """The architecture stored in a .json, or in an .h5's `model_config` attribute; None if unreadable."""
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
        return json.loads(raw) if raw is not None else None
    except (OSError, ValueError):
        return None


def _explain_unknown_layer(path: Path, objects: dict[str, Any]) -> None:
    """When loading failed on a layer class that is neither Keras, QKeras nor the family's (old hls4ml
    examples use custom TernaryDense / BinaryDense classes), say so in this project's words."""
    from tensorflow import keras

    builtin = {"Functional", "Sequential", "Model"}
    for name, kind in _layers(_model_config(path)):
        if kind not in objects and kind not in builtin and not hasattr(keras.layers, kind):
            raise InputError(f"{path}: layer {name!r} of type {kind} is not a Keras/QKeras layer trigger can "
                             "load; rebuild it from QKeras layers (e.g. QDense with a ternary or binary "
                             "quantizer) and save the model again")


def weights_beside(json_file: Path) -> Path:
    """The weights file that belongs to an architecture JSON."""
    for candidate in (json_file.with_name(json_file.stem + "_weights.h5"), json_file.with_suffix(".h5")):
        if candidate.is_file():
            return candidate
    raise InputError(f"{json_file}: no weights beside it ({json_file.stem}_weights.h5 or {json_file.stem}.h5); "
                     "name them with --weights")


def load_model(path: Path, weights: Path | None = None, custom_objects: dict[str, Any] | None = None) -> keras.Model:
    """Load a user's model; every failure is one line naming the file."""
    from tensorflow import keras

    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    objects = _custom_objects(custom_objects or {})
    if path.suffix == ".json":
        weights = weights or weights_beside(path)
        if not weights.is_file():
            raise InputError(f"{weights}: weights file not found")
        try:
            model = keras.models.model_from_json(path.read_text(), custom_objects=objects)
        except Exception as exc:  # Keras raises many kinds for a bad architecture file
            _explain_unknown_layer(path, objects)
            raise InputError(_first_line(f"{path}: not a Keras model architecture ({exc})")) from None
        try:
            model.load_weights(str(weights))
        except Exception as exc:
            raise InputError(_first_line(f"{weights}: weights do not fit {path.name} ({exc})")) from None
        return model
    if path.suffix in (".h5", ".keras"):
        if weights is not None:
            raise InputError(f"{weights}: --weights goes with a .json architecture, {path.name} holds its own weights")
        try:
            return keras.models.load_model(str(path), custom_objects=objects, compile=False)
        except Exception as exc:
            _explain_unknown_layer(path, objects)
            raise InputError(_first_line(f"{path}: cannot load a Keras model from it ({exc})")) from None
    raise InputError(f"{path}: unknown model format {path.suffix!r} (use .h5, .keras, or .json with weights)")


def is_quantized(model: keras.Model) -> bool:
    """True for QKeras models, whose C simulation must be bit-exact."""
    return any(type(layer).__name__.startswith("Q") for layer in model.layers)
