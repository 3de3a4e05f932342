"""The design: a typed fixed-point dataflow graph of what goes on chip, and its file format.

A `Design` is lowered once from hls4ml's `ModelGraph` after conversion and the project's type derivation
(`trigger.design.lower`), so it holds exactly the types written into the firmware. Every backend reads it: the
interpreter (`trigger emulate`, metrics, rates), the estimator, the RTL backend. It is saved in every project
as `design.json` (graph and types) plus `design_weights.npz` (exact weight and table values), so a design can
be reloaded and run without TensorFlow or hls4ml.

Tensors are named by the op that produces them; shapes are per event (no batch axis).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trigger.design.fixed import Fx
from trigger.errors import InputError

SCHEMA_VERSION = 1
DESIGN_FILE = "design.json"
WEIGHTS_FILE = "design_weights.npz"


@dataclass
class Tensor:
    """A value of the design: its name, per-event shape and fixed-point type."""

    name: str
    shape: tuple[int, ...]
    type: Fx

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "type": self.type.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Tensor:
        return cls(d["name"], tuple(int(s) for s in d["shape"]), Fx.from_json(d["type"]))


@dataclass
class Op:
    """One on-chip operation: `kind` selects the interpreter kernel; `types` are its internal fixed-point
    types (accumulators, tables, intermediate results), `weights` its exact constant arrays (each a value of
    `weight_types[name]`), `attrs` everything else (sizes, flags), JSON-serialisable."""

    kind: str
    name: str
    inputs: list[str]
    output: Tensor
    types: dict[str, Fx] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    weight_types: dict[str, Fx] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the hls4ml layer (class and name) it was lowered from, for messages

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "inputs": list(self.inputs), "output": self.output.to_json(),
                "types": {k: t.to_json() for k, t in self.types.items()},
                "weights": {k: {"shape": list(w.shape), "type": self.weight_types[k].to_json()}
                            for k, w in self.weights.items()},
                "attrs": self.attrs, "source": self.source}


@dataclass
class Design:
    """The on-chip design: inputs, ops in execution order, and the names of the output tensors."""

    name: str
    inputs: list[Tensor]
    ops: list[Op]
    outputs: list[str]
    meta: dict[str, Any] = field(default_factory=dict)  # clock, part, io_type, strategy, family...

    def tensor(self, name: str) -> Tensor:
        for t in self.inputs:
            if t.name == name:
                return t
        for op in self.ops:
            if op.output.name == name:
                return op.output
        raise KeyError(name)

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.tensor(n) for n in self.outputs]

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "name": self.name,
                "inputs": [t.to_json() for t in self.inputs], "outputs": list(self.outputs),
                "ops": [op.to_json() for op in self.ops], "meta": self.meta}

    def save(self, folder: Path) -> None:
        """Write `design.json` and `design_weights.npz` into `folder` (a project)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / DESIGN_FILE).write_text(json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n")
        arrays = {f"{op.name}/{k}": w for op in self.ops for k, w in op.weights.items()}
        np.savez_compressed(folder / WEIGHTS_FILE, **arrays)

    @classmethod
    def load(cls, folder: Path) -> Design:
        """Read a saved design; one-line errors for a missing, corrupt or newer file."""
        path = Path(folder) / DESIGN_FILE
        if not path.is_file():
            raise InputError(f"{path}: no design here (compile the project with this version of trigger)")
        try:
            d = json.loads(path.read_text())
            version = d.get("schema_version")
            if version != SCHEMA_VERSION:
                raise InputError(f"{path}: design schema version {version}, this trigger reads {SCHEMA_VERSION}")
            with np.load(Path(folder) / WEIGHTS_FILE) as npz:
                arrays = {k: npz[k] for k in npz.files}
            ops = []
            for o in d["ops"]:
                weights = {k: arrays[f"{o['name']}/{k}"].reshape(spec["shape"]) for k, spec in o["weights"].items()}
                ops.append(Op(kind=o["kind"], name=o["name"], inputs=list(o["inputs"]),
                              output=Tensor.from_json(o["output"]),
                              types={k: Fx.from_json(t) for k, t in o["types"].items()},
                              weights=weights,
                              weight_types={k: Fx.from_json(spec["type"]) for k, spec in o["weights"].items()},
                              attrs=o["attrs"], source=o.get("source", "")))
            return cls(d["name"], [Tensor.from_json(t) for t in d["inputs"]], ops, list(d["outputs"]),
                       d.get("meta", {}))
        except InputError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: corrupt design ({type(exc).__name__}: {exc})") from None
