"""The YAML config schema: one file describes one trigger model end to end.

The whole file is validated before any work starts. Every error names the dotted path of the field at
fault (`training.epochs: must be a positive integer`), unknown keys are errors (a typo must not silently
fall back to a default), and every field has a default that gives a sensible design.
Family-specific sections (`model.architecture`, `model.preprocessing`, `evaluation`) are validated by
the model family, which gets the raw mapping and the path prefix for its messages.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trigger.errors import ConfigError, InputError

BACKENDS = ("Vitis", "Vivado")
IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("Latency", "Resource")
PRECISION_RE = re.compile(r"^(ap_fixed|ap_ufixed)<\s*(\d+)\s*,\s*(-?\d+)\s*(,\s*\w+\s*)*>$|^auto$")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# One spelling per key: the other one is an unknown key whose message names the right one.
SPELLINGS = {"standardize": "standardise"}


class Section:
    """Reads one mapping of the YAML, remembering which keys were used, so unknown keys are errors."""

    def __init__(self, raw: Any, path: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(path or "<root>", f"must be a mapping, got {type(raw).__name__}")
        self.raw = raw
        self.path = path
        self.used: set[str] = set()

    def field_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.raw.get(key, default)

    def section(self, key: str) -> Section:
        return Section(self.get(key), self.field_path(key))

    def has(self, key: str) -> bool:
        return key in self.raw

    def integer(self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.field_path(key), f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(self.field_path(key), f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(self.field_path(key), f"must be <= {maximum}, got {value}")
        return value

    def number(self, key: str, default: float | None, *, minimum: float | None = None,
               maximum: float | None = None, exclusive_minimum: bool = False) -> float | None:
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.field_path(key), f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(self.field_path(key), f"must be a finite number, got {value}")
        if minimum is not None and (value < minimum or (exclusive_minimum and value == minimum)):
            bound = ">" if exclusive_minimum else ">="
            raise ConfigError(self.field_path(key), f"must be {bound} {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(self.field_path(key), f"must be <= {maximum}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self.field_path(key), f"must be true or false, got {value!r}")
        return value

    def string(self, key: str, default: str | None, *, choices: tuple[str, ...] | None = None) -> str | None:
        value = self.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(self.field_path(key), f"must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise ConfigError(self.field_path(key), f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def precision(self, key: str, default: str | None) -> str | None:
        value = self.string(key, default)
        if value is not None and not PRECISION_RE.match(value):
            raise ConfigError(self.field_path(key), f"must look like ap_fixed<16,6> or auto, got {value!r}")
        return value

    def finish(self) -> None:
        """Reject keys nobody asked for."""
        unknown = sorted(set(self.raw) - self.used, key=str)
        if unknown:
            right = SPELLINGS.get(unknown[0])
            raise ConfigError(self.field_path(str(unknown[0])),
                              f"unknown key; trigger spells it {right!r}" if right else "unknown key")


@dataclass(frozen=True)
class FixedType:
    """A fixed-point width in QKeras's convention, the one convention of every `{bits, integer}` in a config:
    `bits` in total, `integer` the bits left of the binary point *not counting the sign bit*. A signed type
    (weights, biases, inputs, `quantized_bits` outputs) `{bits: 16, integer: 5}` is `ap_fixed<16,6>`; an
    unsigned one (ReLU activations, scores) has no sign bit, so `{bits: 16, integer: 10}` is
    `ap_ufixed<16,10>`. Whether a field is signed is fixed by the layer it sets, never by the config."""

    bits: int
    integer: int

    @classmethod
    def read(cls, sec: Section, default: FixedType) -> FixedType:
        bits = sec.integer("bits", default.bits, minimum=1, maximum=32)
        integer = sec.integer("integer", default.integer, minimum=-32, maximum=bits)
        sec.finish()
        return cls(bits, integer)


@dataclass(frozen=True)
class LayerQuantization:
    """QKeras quantizer widths of one layer: weights, biases and the activation after it."""

    weight: FixedType
    bias: FixedType
    activation: FixedType

    @classmethod
    def read(cls, sec: Section, default: LayerQuantization) -> LayerQuantization:
        q = cls(
            FixedType.read(sec.section("weight"), default.weight) if sec.has("weight") else default.weight,
            FixedType.read(sec.section("bias"), default.bias) if sec.has("bias") else default.bias,
            FixedType.read(sec.section("activation"), default.activation)
            if sec.has("activation") else default.activation,
        )
        sec.finish()
        return q


@dataclass(frozen=True)
class QuantizationConfig:
    default: LayerQuantization
    input: FixedType
    layers: dict[str, LayerQuantization]

    def for_layer(self, name: str) -> LayerQuantization:
        return self.layers.get(name, self.default)


@dataclass(frozen=True)
class ModelConfig:
    family: str
    architecture: dict[str, Any]
    preprocessing: dict[str, Any]


@dataclass(frozen=True)
class DataConfig:
    file: Path
    fractions: tuple[float, float, float]
    split_seed: int
    max_events: int | None


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    patience: int
    float_twin: bool
    init_from_float: bool  # start quantization-aware training from the trained float twin's weights


@dataclass(frozen=True)
class PruningConfig:
    enabled: bool
    target_sparsity: float
    initial_sparsity: float
    schedule: str
    epochs: int
    frequency: int


@dataclass(frozen=True)
class HLSConfig:
    backend: str
    part: str
    clock_period_ns: float
    io_type: str
    strategy: str
    reuse_factor: int
    default_precision: str
    layer_precision: dict[str, dict[str, str]]
    softmax: str


@dataclass(frozen=True)
class BudgetConfig:
    latency_ns: float | None
    resources_pct: dict[str, float]


@dataclass(frozen=True)
class EquivalenceConfig:
    min_events: int
    required_fraction: float  # bit-exact events / events, for quantized models
    # For float models brought with --model, and for a kept table softmax (whose logits are also checked
    # bit for bit): the fraction of events whose argmax the firmware must reproduce.
    required_argmax_agreement: float


@dataclass(frozen=True)
class OutputConfig:
    projects_dir: Path
    scripts_dir: Path


@dataclass(frozen=True)
class Config:
    name: str
    source: Path | None
    model: ModelConfig
    quantization: QuantizationConfig
    data: DataConfig
    training: TrainingConfig
    pruning: PruningConfig
    hls: HLSConfig
    budget: BudgetConfig
    equivalence: EquivalenceConfig
    evaluation: dict[str, Any]
    output: OutputConfig
    backends: tuple[str, ...] = ("hls",)  # "rtl": also da4ml Verilog, Verilated against the emulator (trigger.rtl)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def project_dir(self) -> Path:
        return self.output.projects_dir / self.name

    @property
    def scripts_dir(self) -> Path:
        return self.output.scripts_dir / self.name


RESOURCES = ("lut", "ff", "dsp", "bram")
LAYER_PRECISION_KEYS = ("result", "accum", "weight", "bias")


def _tcl_word(sec: Section, key: str, value: str | None) -> str:
    """A value the vendor scripts write unquoted into TCL (part, output folders): refused here, before any
    work, when it could break or inject into the scripts."""
    from trigger.vivado_scripts import _TCL_WORD

    if not value:
        raise ConfigError(sec.field_path(key), "must not be empty")
    if not _TCL_WORD.match(value):
        raise ConfigError(sec.field_path(key), f"{value!r} cannot go into the vendor TCL scripts "
                                               "(use letters, digits and _ . - + /)")
    return value


def _quantization(sec: Section) -> QuantizationConfig:
    six = FixedType(6, 0)
    base = LayerQuantization(six, six, six)
    default = LayerQuantization.read(sec.section("default"), base) if sec.has("default") else base
    input_type = FixedType.read(sec.section("input"), FixedType(16, 5)) if sec.has("input") else FixedType(16, 5)
    layers_sec = sec.section("layers")
    layers = {}
    for name in list(layers_sec.raw):
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(layers_sec.field_path(str(name)), "layer names are identifiers")
        layers[name] = LayerQuantization.read(layers_sec.section(name), default)
    layers_sec.finish()
    sec.finish()
    return QuantizationConfig(default, input_type, layers)


def _hls(sec: Section) -> HLSConfig:
    precision = sec.section("precision")
    default_precision = precision.precision("default", "ap_fixed<16,6>")
    layers_sec = precision.section("layers")
    layer_precision: dict[str, dict[str, str]] = {}
    for name in list(layers_sec.raw):
        entry = layers_sec.section(name)
        layer_precision[name] = {}
        for key in LAYER_PRECISION_KEYS:
            value = entry.precision(key, None)
            if value is not None:
                layer_precision[name][key] = value
        entry.finish()
    layers_sec.finish()
    precision.finish()
    part = _tcl_word(sec, "part", sec.string("part", "xcvu13p-flga2577-2-e"))
    from trigger.estimate.budget import part_resources

    part_resources(part)  # the estimator and the budget need the part's resources: unknown parts stop here
    cfg = HLSConfig(
        backend=sec.string("backend", "Vitis", choices=BACKENDS),
        part=part,
        clock_period_ns=sec.number("clock_period_ns", 5.0, minimum=0.5, maximum=100.0),
        io_type=sec.string("io_type", "io_parallel", choices=IO_TYPES),
        strategy=sec.string("strategy", "Latency", choices=STRATEGIES),
        reuse_factor=sec.integer("reuse_factor", 1, minimum=1, maximum=4096),
        default_precision=default_precision,
        layer_precision=layer_precision,
        softmax=sec.string("softmax", "strip", choices=("strip", "keep")),
    )
    sec.finish()
    return cfg


def _budget(sec: Section) -> BudgetConfig:
    latency = sec.number("latency_ns", None, minimum=0.0, exclusive_minimum=True)
    res_sec = sec.section("resources_pct")
    resources = {}
    for key in list(res_sec.raw):
        if key not in RESOURCES:
            raise ConfigError(res_sec.field_path(str(key)), f"unknown resource; use {', '.join(RESOURCES)}")
        resources[key] = res_sec.number(key, None, minimum=0.0, maximum=100.0)
    res_sec.finish()
    sec.finish()
    return BudgetConfig(latency, resources)


def parse_config(raw: Any, source: Path | None = None) -> Config:
    """Validate a parsed YAML document; raise ConfigError naming the first bad field."""
    root = Section(raw, "")
    name = root.string("name", None)
    if name is None:
        raise ConfigError("name", "is required (it names hls_projects/<name>)")
    if not NAME_RE.match(name):
        raise ConfigError("name", f"must be an identifier (letters, digits, _), got {name!r}")

    model_sec = root.section("model")
    family = model_sec.string("family", None)
    if family is None:
        raise ConfigError("model.family", "is required")
    arch = model_sec.get("architecture", {}) or {}
    prep = model_sec.get("preprocessing", {}) or {}
    for key, value in (("architecture", arch), ("preprocessing", prep)):
        if not isinstance(value, dict):
            raise ConfigError(f"model.{key}", "must be a mapping")
    model_sec.finish()

    quant = _quantization(root.section("quantization"))

    data_sec = root.section("data")
    file = data_sec.string("file", None)
    if file is None:
        raise ConfigError("data.file", "is required (an HDF5 file made by `trigger data generate`)")
    fractions = data_sec.get("fractions", [0.6, 0.2, 0.2])
    if (not isinstance(fractions, list) or len(fractions) != 3
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in fractions)
            or abs(sum(fractions) - 1.0) > 1e-6):
        raise ConfigError("data.fractions", f"must be three positive numbers summing to 1, got {fractions!r}")
    max_events = data_sec.get("max_events")
    if max_events is not None and (isinstance(max_events, bool) or not isinstance(max_events, int)
                                   or max_events <= 0):
        raise ConfigError("data.max_events", f"must be a positive integer or null, got {max_events!r}")
    data = DataConfig(Path(file), tuple(float(f) for f in fractions), data_sec.integer("split_seed", 0),
                      max_events)
    data_sec.finish()

    tr = root.section("training")
    training = TrainingConfig(
        epochs=tr.integer("epochs", 30, minimum=1),
        batch_size=tr.integer("batch_size", 512, minimum=1),
        learning_rate=tr.number("learning_rate", 1e-3, minimum=0.0, exclusive_minimum=True),
        seed=tr.integer("seed", 42, minimum=0),
        patience=tr.integer("patience", 5, minimum=1),
        float_twin=tr.boolean("float_twin", True),
        init_from_float=tr.boolean("init_from_float", False),
    )
    if training.init_from_float and not training.float_twin:
        raise ConfigError("training.init_from_float", "needs training.float_twin: true")
    tr.finish()

    pr = root.section("pruning")
    pruning = PruningConfig(
        enabled=pr.boolean("enabled", True),
        target_sparsity=pr.number("target_sparsity", 0.5, minimum=0.0, maximum=0.99),
        initial_sparsity=pr.number("initial_sparsity", 0.0, minimum=0.0, maximum=0.99),
        schedule=pr.string("schedule", "polynomial_decay", choices=("polynomial_decay", "constant")),
        epochs=pr.integer("epochs", 10, minimum=1),
        frequency=pr.integer("frequency", 50, minimum=1),
    )
    if pruning.initial_sparsity > pruning.target_sparsity:
        raise ConfigError("pruning.initial_sparsity", "must not exceed pruning.target_sparsity")
    pr.finish()

    hls = _hls(root.section("hls"))
    budget = _budget(root.section("budget"))

    eq = root.section("equivalence")
    equivalence = EquivalenceConfig(
        min_events=eq.integer("min_events", 10000, minimum=1),
        required_fraction=eq.number("required_fraction", 1.0, minimum=0.0, maximum=1.0),
        required_argmax_agreement=eq.number("required_argmax_agreement", 0.99, minimum=0.0, maximum=1.0),
    )
    eq.finish()

    evaluation = root.get("evaluation", {}) or {}
    if not isinstance(evaluation, dict):
        raise ConfigError("evaluation", "must be a mapping")

    out = root.section("output")
    output = OutputConfig(Path(_tcl_word(out, "projects_dir", out.string("projects_dir", "hls_projects"))),
                          Path(_tcl_word(out, "scripts_dir", out.string("scripts_dir", "vivado_scripts"))))
    out.finish()
    backends = root.get("backends", ["hls"])
    if not isinstance(backends, list) or not backends or not set(map(str, backends)) <= {"hls", "rtl"} \
            or len(set(backends)) != len(backends):
        raise ConfigError("backends", f"must be a list of 'hls' and 'rtl', each at most once, got {backends!r}")
    root.finish()

    return Config(name=name, source=source, model=ModelConfig(family, arch, prep), quantization=quant,
                  data=data, training=training, pruning=pruning, hls=hls, budget=budget,
                  equivalence=equivalence, evaluation=evaluation, output=output, backends=tuple(backends), raw=raw)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; relative paths inside it are relative to the working directory."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a config file")
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the config ({exc.strerror})") from None
    if b"\0" in data:
        raise InputError(f"{path}: a binary file, not a YAML config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}), not a YAML config") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"{path}: not valid YAML{where}") from None
    try:
        return parse_config(raw, path)
    except ConfigError as exc:
        raise ConfigError(exc.field, f"{exc.args[0].split(': ', 1)[1]} (in {path})") from None
