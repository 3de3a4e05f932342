"""What a model family supplies to the one `trigger compile` pipeline.

The pipeline owns the stages (data, training, pruning, conversion, C simulation, equivalence, estimate,
report); a family owns only what differs between physics problems: how its dataset becomes model inputs,
which Keras model it builds, which part of that model goes on chip, and which physics figures it reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from tensorflow import keras

    from trigger.config import Config
    from trigger.data import Dataset


@dataclass
class Split:
    """One split of prepared events.

    `x` are the model inputs after the family's preprocessing (floats, not yet on the input grid), `y` the
    training targets, `meta` whatever the family's metrics need (labels, process ids, jet counts...).
    """

    x: np.ndarray | list[np.ndarray]
    y: np.ndarray | list[np.ndarray] | None
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        first = self.x[0] if isinstance(self.x, list) else self.x
        return int(first.shape[0])

    def take(self, index: np.ndarray | slice) -> Split:
        """The events at `index`, in every array."""

        def pick(a: Any) -> Any:
            if a is None:
                return None
            if isinstance(a, list):
                return [v[index] for v in a]
            return a[index]

        return Split(pick(self.x), pick(self.y), {k: v[index] for k, v in self.meta.items()})


@dataclass
class Prepared:
    """A family's view of its dataset: splits plus the names and preprocessing that the report documents."""

    train: Split
    val: Split
    test: Split
    input_names: list[str]
    output_names: list[str]
    preprocessing: dict[str, Any] = field(default_factory=dict)


class ModelFamily(ABC):
    """Base class of the model families; subclasses register themselves in `trigger.families.FAMILIES`.

    The constructor validates the family's own config sections (`model.architecture`,
    `model.preprocessing`, `evaluation`), raising `ConfigError` with the field's dotted path.
    """

    name: ClassVar[str]
    datasets: ClassVar[tuple[str, ...]]  # the `dataset` names in the HDF5 manifest this family reads

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    @abstractmethod
    def prepare(self, data: Dataset) -> Prepared:
        """Turn the loaded dataset into model inputs and targets (preprocessing happens here)."""

    @abstractmethod
    def build(self, quantized: bool) -> keras.Model:
        """The model to train: QKeras layers when `quantized`, plain Keras layers for the float twin."""

    @abstractmethod
    def compile_args(self) -> dict[str, Any]:
        """Arguments for `model.compile` besides the optimizer (loss, metrics)."""

    @abstractmethod
    def events(self, arrays: dict[str, np.ndarray]) -> Split:
        """Model inputs (not yet on the input grid) of raw dataset rows, under the preprocessing fitted by
        `prepare` or taken back by `restore_preprocessing`: what `trigger emulate` feeds a compiled design."""

    def restore_preprocessing(self, preprocessing: dict[str, Any]) -> None:  # noqa: B027
        """Take back the values `prepare` fitted on the training split (report.json's `data.preprocessing`);
        families whose preprocessing is fixed by the config need nothing here."""

    def firmware_model(self, model: keras.Model) -> keras.Model:
        """The part of a trained model that goes on chip; its outputs are compared bit for bit."""
        return model

    def calibration_events(self) -> Split | None:
        """Events besides the test split that the physics figures are measured on (e.g. the zero-bias crossings
        rates are calibrated on); every model scores them and the firmware's legs are checked on them too.
        Called after `prepare`; most families have none."""
        return None

    @abstractmethod
    def evaluate(self, outputs: np.ndarray | list[np.ndarray], split: Split) -> dict[str, Any]:
        """Physics figures from firmware-model outputs on `split` (JSON-serialisable)."""

    def plots(self, outputs: dict[str, np.ndarray | list[np.ndarray]], split: Split, out_dir: Path) -> list[str]:
        """Write PNG plots for the report; `outputs` maps 'float', 'quantized', 'csim' to outputs."""
        return []

    def custom_objects(self) -> dict[str, Any]:
        """Keras custom objects needed to load this family's saved models (extension layers)."""
        return {}

    def configure_hls(self, hls_config: dict[str, Any], firmware_model: keras.Model) -> None:  # noqa: B027
        """Adjust the hls4ml config in place after the pipeline has derived the types (extension layers);
        most families need nothing here, so it is not abstract."""

    def summary_lines(self, metrics: dict[str, Any]) -> list[str]:
        """Markdown lines for report.md summarising the family's figures."""
        return []
