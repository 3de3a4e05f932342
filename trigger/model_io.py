"""Loading models that users trained elsewhere (`trigger compile CONFIG --model FILE`).

Accepted: a full Keras/QKeras model in `.h5`, or an architecture `.json` with its weights in an `.h5`
beside it (`<stem>_weights.h5` or `<stem>.h5`, or named with `--weights`).
"""

from __future__ import annotations

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
            raise InputError(_first_line(f"{path}: cannot load a Keras model from it ({exc})")) from None
    raise InputError(f"{path}: unknown model format {path.suffix!r} (use .h5, .keras, or .json with weights)")


def is_quantized(model: keras.Model) -> bool:
    """True for QKeras models, whose C simulation must be bit-exact."""
    return any(type(layer).__name__.startswith("Q") for layer in model.layers)
