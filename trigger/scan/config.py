"""Scan configs: a base compile config plus axes (a grid and/or seeded random samples) -> validated points.

Every point is resolved and validated by the compile config's own schema and its model family before any
work starts, so a bad axis value fails in a second with one line naming it, not an hour into the scan. A
point is named by a short hash of its resolved config: its folder, and whether it is already done, follow
from its content alone, so a rerun of the same scan finds its finished points.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trigger.config import NAME_RE, Section, load_config, parse_config
from trigger.errors import ConfigError, InputError, TriggerError
from trigger.families import family_class

HASH_CHARS = 12
RESERVED = ("name", "output")  # set by the scan for every point, so never an axis
UNIFORM_DECIMALS = 4  # uniform draws are rounded so tables and hashes stay readable


@dataclass(frozen=True)
class Point:
    """One design: its axis values, its resolved compile config (a raw mapping, without `output`) and hash."""

    axes: dict[str, Any]
    config: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class ScanConfig:
    name: str
    source: Path | None
    family: str
    axes: tuple[str, ...]  # grid axes, then random axes, in the order written
    points: tuple[Point, ...]
    repeated_draws: int  # random samples that repeated an earlier point and were dropped


def point_hash(config: dict[str, Any]) -> str:
    """Short sha256 of the canonical JSON of a resolved config (sorted keys, no whitespace)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in nested mappings, creating missing levels (the compile schema then judges the key)."""
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(".".join(parents[:i + 1]), f"is {child!r}, not a mapping, so {key} cannot be set")
        node = child
    node[leaf] = value


def load_scan(path: str | Path) -> ScanConfig:
    """Read a scan config file; errors name the field and the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: scan config not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid YAML") from None
    try:
        return parse_scan(raw, path)
    except ConfigError as exc:
        raise ConfigError(exc.field, f"{exc.args[0].split(': ', 1)[1]} (in {path})") from None


def parse_scan(raw: Any, source: Path | None = None) -> ScanConfig:
    """Validate a scan document and every one of its points."""
    root = Section(raw, "")
    name = root.string("name", None)
    if name is None or not NAME_RE.match(name):
        raise ConfigError("name", f"must be an identifier (letters, digits, _; it names scans/<name>), got {name!r}")
    base = _base(root.get("base"))
    grid = _grid(root.section("grid"))
    random_axes, samples = _random(root.section("random"))
    root.finish()
    overlap = sorted(set(grid) & set(random_axes))
    if overlap:
        raise ConfigError(f"random.axes.{overlap[0]}", "is also a grid axis")
    if not grid and not random_axes:
        raise ConfigError("grid", "a scan needs at least one axis, in grid or random.axes")

    points: list[Point] = []
    seen: set[str] = set()
    repeated = 0
    for grid_values in itertools.product(*grid.values()):
        for sample_index, sample in enumerate(samples or [{}]):
            axes = {**dict(zip(grid, grid_values, strict=True)), **sample}
            point = _point(base, axes, grid, sample_index)
            if point.hash in seen:
                if not sample:
                    # only a repeated grid value gives the same point without random axes
                    raise ConfigError(f"grid.{_first_repeat(grid)}", "repeats a value")
                repeated += 1
                continue
            seen.add(point.hash)
            points.append(point)
    return ScanConfig(name, source, base["model"]["family"], (*grid, *random_axes), tuple(points), repeated)


def _base(value: Any) -> dict[str, Any]:
    """The base compile config: a path (relative to the working directory) or an inline mapping."""
    if isinstance(value, str):
        try:
            return copy.deepcopy(load_config(value).raw)
        except ConfigError as exc:
            raise InputError(str(exc)) from None  # already names the field and the base file
    if isinstance(value, dict):
        try:
            parse_config(copy.deepcopy(value))
        except ConfigError as exc:
            raise ConfigError(f"base.{exc.field}", exc.args[0].split(": ", 1)[1]) from None
        return copy.deepcopy(value)
    raise ConfigError("base", f"must be a compile config path or an inline mapping, got {value!r}")


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not all(NAME_RE.match(part) for part in key.split(".")):
        raise ConfigError(f"{where}.{key}", "axes are dotted config keys such as quantization.default.weight.bits")
    if key.split(".")[0] in RESERVED:
        raise ConfigError(f"{where}.{key}", "is set by the scan for every point, so it cannot be an axis")
    return key


def _grid(sec: Section) -> dict[str, list[Any]]:
    grid = {}
    for key in list(sec.raw):
        values = sec.get(_check_key(key, "grid"))
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key}", f"must be a non-empty list of values, got {values!r}")
        grid[key] = values
    return grid


def _random(sec: Section) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Random axes and their draws: `samples` draws from `seed`, axes in the order written, so the same
    config always gives the same points."""
    if not sec.raw:
        return {}, []
    samples = sec.integer("samples", 0, minimum=1)
    seed = sec.integer("seed", 0, minimum=0)
    axes_sec = sec.section("axes")
    specs = {}
    for key in list(axes_sec.raw):
        specs[_check_key(key, "random.axes")] = _distribution(axes_sec.get(key), f"random.axes.{key}")
    sec.finish()
    if not specs:
        raise ConfigError("random.axes", "must name at least one axis")
    rng = np.random.default_rng(seed)
    return specs, [{key: draw(rng) for key, draw in specs.items()} for _ in range(samples)]


def _distribution(spec: Any, field: str) -> Any:
    """A draw function: a list is a uniform choice, `{uniform: [lo, hi]}` a float, `{integer: [lo, hi]}` an
    integer in [lo, hi]."""
    if isinstance(spec, list) and spec:
        return lambda rng: spec[int(rng.integers(len(spec)))]
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, bounds), = spec.items()
        numbers = isinstance(bounds, list) and len(bounds) == 2 and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        if kind == "uniform" and numbers and bounds[0] < bounds[1]:
            return lambda rng: round(float(rng.uniform(*bounds)), UNIFORM_DECIMALS)
        if kind == "integer" and numbers and all(isinstance(b, int) for b in bounds) and bounds[0] <= bounds[1]:
            return lambda rng: int(rng.integers(bounds[0], bounds[1] + 1))
    raise ConfigError(field, f"must be a list of values, {{uniform: [low, high]}} or {{integer: [low, high]}}, "
                             f"got {spec!r}")


def _first_repeat(grid: dict[str, list[Any]]) -> str:
    for key, values in grid.items():
        dumped = [json.dumps(v, sort_keys=True) for v in values]
        if len(set(dumped)) < len(dumped):
            return key
    return next(iter(grid))


def _point(base: dict[str, Any], axes: dict[str, Any], grid: dict[str, list[Any]], sample: int) -> Point:
    """Resolve one point and validate it as `trigger compile` would, naming the axis at fault."""
    config = copy.deepcopy(base)
    config.pop("output", None)
    try:
        for key, value in axes.items():
            set_dotted(config, key, copy.deepcopy(value))
        cfg = parse_config(copy.deepcopy(config))
        family_class(cfg.model.family)(cfg)
        if not cfg.data.file.is_file():
            raise ConfigError("data.file", f"{cfg.data.file}: data file not found")
    except TriggerError as exc:
        raise _axis_error(exc, axes, grid, sample) from None
    return Point(axes, config, point_hash(config))


def _axis_error(exc: TriggerError, axes: dict[str, Any], grid: dict[str, list[Any]], sample: int) -> ConfigError:
    """One line naming the axis (and value) whose field failed, or the whole point when no one axis did."""
    field = getattr(exc, "field", "")
    message = str(exc)
    for key, value in axes.items():
        if field == key or field.startswith(f"{key}.") or key.startswith(f"{field}."):
            where = f"grid.{key}" if key in grid else f"random.axes.{key}"
            reason = message.split(": ", 1)[1] if field == key else message
            drawn = "" if key in grid else f" (sample {sample})"
            return ConfigError(where, f"value {value!r}{drawn}: {reason}")
    values = ", ".join(f"{k}={v!r}" for k, v in axes.items())
    return ConfigError(field or "point", f"{message.split(': ', 1)[-1] if field else message} (point {values})")
