"""`trigger emulate` (run a compiled design on any number of events) and `trigger verify` (rebuild a project's
C simulation as it is on disk and check it against the design's emulator).

Both read only the project: `design.json` and its weights, `config.yaml` (the compiled config) and
`report.json` (the preprocessing fitted at compile time, the rate thresholds). Emulation needs neither
TensorFlow nor hls4ml; verification needs hls4ml's build of the C simulation (g++).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trigger.errors import CheckFailed, InputError

CONFIG_FILE = "config.yaml"


@dataclass
class Project:
    """A compiled project as `emulate` and `verify` see it."""

    path: Path
    design: Any
    report: dict[str, Any]
    cfg: Any
    family: Any


def open_project(path: Path) -> Project:
    """Load a project's design, config and report, and the family with its fitted preprocessing."""
    from trigger.config import parse_config
    from trigger.design import Design
    from trigger.families import family_class

    if not path.is_dir():
        raise InputError(f"{path}: no such project folder")
    design = Design.load(path)
    for name in (CONFIG_FILE, "report.json"):
        if not (path / name).is_file():
            raise InputError(f"{path / name}: missing (compile the project with this version of trigger)")
    try:
        report = json.loads((path / "report.json").read_text())
        raw = yaml.safe_load((path / CONFIG_FILE).read_text())
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: unreadable report.json or {CONFIG_FILE} ({type(exc).__name__})") from None
    cfg = parse_config(raw, path / CONFIG_FILE)
    family = family_class(cfg.model.family)(cfg)
    family.restore_preprocessing(report["data"]["preprocessing"])
    return Project(path, design, report, cfg, family)


def dataset_inputs(project: Project, data: Path, events: int | None) -> tuple[Any, int]:
    """The family's model inputs of the first `events` rows of `data`, on the input grid as in `compile`, and
    how many input values saturated there."""
    from trigger.data import read
    from trigger.fixed_point import on_input_grid

    manifest, arrays = read(data, events)
    if manifest["dataset"] not in project.family.datasets:
        raise InputError(f"{data}: holds the {manifest['dataset']!r} dataset; {project.design.name} reads "
                         f"{' or '.join(map(repr, project.family.datasets))}")
    return on_input_grid(project.family.events(arrays), project.cfg.quantization.input)


def _progress(total: int, what: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="ev", unit_scale=True, desc=what, disable=not sys.stderr.isatty(), leave=False)


def _emulate(args: argparse.Namespace) -> int:
    from trigger.design import run

    if args.events is not None and args.events <= 0:
        raise InputError(f"--events: must be a positive number of events, got {args.events}")
    project = open_project(args.project)
    split, saturated = dataset_inputs(project, args.data, args.events)
    n = len(split)
    start = time.perf_counter()
    with _progress(n, "emulate") as bar:
        outputs = run(project.design, split.x, progress=bar.update)
    seconds = time.perf_counter() - start
    summary = f"{project.design.name}: emulated {n} events in {seconds:.2f} s ({n / seconds:,.0f} events/s)"
    decisions = _decisions(project, outputs)
    if args.out is not None:
        _write_outputs(args.out, project, outputs, decisions=decisions, meta=split.meta, saturated=saturated)
        summary += f" -> {args.out}"
    for key, fired in decisions.items():
        summary += f"; {key}: {int(fired.sum())} fire ({fired.mean():.3g})"
    print(summary)
    return 0


def _decisions(project: Project, outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """For a one-score trigger: whether each event fires at each rate's firmware threshold (score > raw)."""
    metrics = project.report.get("metrics") or {}
    calibrated = metrics.get("emulator") or metrics.get("csim") or {}
    thresholds = calibrated.get("thresholds")
    if not thresholds or len(outputs) != 1:
        return {}
    scores = outputs[0].reshape(len(outputs[0]), -1)[:, 0]
    return {key: scores > t["value"] for key, t in thresholds.items()}


def _write_outputs(path: Path, project: Project, outputs: list[np.ndarray], *, decisions: dict[str, np.ndarray],
                   meta: dict[str, np.ndarray], saturated: int) -> None:
    """outputs/<tensor>, decision/<rate> and the dataset's labels, written to a temporary name and renamed."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for tensor, values in zip(project.design.outputs, outputs, strict=True):
                f.create_dataset(f"outputs/{tensor}", data=values, compression="gzip")
            for key, fired in decisions.items():
                f.create_dataset(f"decision/{key}", data=fired, compression="gzip")
            for key, values in meta.items():
                if values.ndim == 1:
                    f.create_dataset(f"meta/{key}", data=values, compression="gzip")
            f.attrs["design"] = project.design.name
            f.attrs["inputs_saturated"] = saturated
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_dat(path: Path) -> np.ndarray:
    rows = [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
    return np.asarray(rows, dtype=np.float64)


def _as_inputs(design: Any, flat: np.ndarray) -> list[np.ndarray]:
    """Golden-vector rows (every input flattened and concatenated) back into the design's input arrays."""
    arrays, offset = [], 0
    for t in design.inputs:
        arrays.append(flat[:, offset:offset + t.size].reshape(len(flat), *t.shape))
        offset += t.size
    return arrays


def rebuild_csim(project: Path) -> Any:
    """The project's C simulation built from its files as they are on disk, in a temporary copy (nothing is
    written into the project)."""
    import hls4ml

    tmp = Path(tempfile.mkdtemp(prefix="trigger-verify-"))
    copy = tmp / project.name
    shutil.copytree(project, copy)
    config = copy / "hls4ml_config.yml"
    text = config.read_text()
    config.write_text(text.replace(str(project.resolve()), str(copy.resolve())))
    model = hls4ml.converters.link_existing_project(str(copy))
    try:
        model.compile()
    except Exception as exc:  # hls4ml raises a bare Exception with the compiler's output
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckFailed(f"{project}: the C simulation does not build: {str(exc).strip().splitlines()[-1]}") from None
    model._trigger_tmp = tmp  # removed by the caller
    return model


def _verify(args: argparse.Namespace) -> int:
    from trigger.design import run
    from trigger.equivalence import compare

    if args.events <= 0:
        raise InputError(f"--events: must be a positive number of events, got {args.events}")
    project = open_project(args.project)
    tb = args.project / "tb_data"
    golden_in, golden_out = _read_dat(tb / "tb_input_features.dat"), _read_dat(tb / "tb_output_predictions.dat")
    checks: dict[str, tuple[list[np.ndarray], np.ndarray | None]] = {
        "golden vectors": (_as_inputs(project.design, golden_in), golden_out)}
    if args.data is not None:
        split, _ = dataset_inputs(project, args.data, args.events)
        xs = split.x if isinstance(split.x, list) else [split.x]
        checks[f"{len(xs[0])} events of {args.data}"] = (xs, None)
    model = rebuild_csim(args.project)
    failed = []
    try:
        for what, (xs, expected) in checks.items():
            emulated = run(project.design, xs)
            csim = model.predict([np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float64) for x in xs]
                                 if len(xs) > 1 else np.ascontiguousarray(xs[0].reshape(len(xs[0]), -1),
                                                                          dtype=np.float64))
            legs = {"emulator_vs_csim": compare(emulated, csim)}
            if expected is not None:
                legs["emulator_vs_golden"] = compare(emulated, expected)
            for leg, result in legs.items():
                line = (f"{what}: {leg} bit-exact on {result['bit_exact_events']}/{result['events']} events, "
                        f"largest difference {result['max_abs_diff']:.6g}")
                if result["bit_exact_fraction"] < 1.0:
                    line += f"; first mismatching events {result['first_mismatches']}"
                    failed.append(line)
                print(line)
    finally:
        shutil.rmtree(model._trigger_tmp, ignore_errors=True)
    if failed:
        raise CheckFailed(failed[0])
    print(f"{project.design.name}: PASS, the C simulation on disk equals the design's emulator")
    return 0


def add_design_commands(sub: Any) -> None:
    """Register `emulate` and `verify` on the CLI's subcommands."""
    emulate = sub.add_parser("emulate", help="run a compiled design on a dataset with its exact emulator",
                             description="Run hls_projects/<name> (its design.json) on the events of a dataset, "
                                         "with the family's preprocessing and the input grid applied as in compile.")
    emulate.add_argument("project", type=Path, help="a compiled project folder (hls_projects/<name>)")
    emulate.add_argument("--data", type=Path, required=True, help="an HDF5 dataset made by `trigger data generate`")
    emulate.add_argument("--events", type=int, help="the first N events (default: all)")
    emulate.add_argument("--out", type=Path, help="write outputs (and trigger decisions) to this HDF5 file")
    emulate.set_defaults(func=_emulate)

    verify = sub.add_parser("verify", help="rebuild a project's C simulation from disk and check it bit for bit",
                            description="Rebuild the C simulation from the project's files as they are (after your "
                                        "edits) and compare it with the design's emulator on the golden vectors "
                                        "and, with --data, on events of a dataset. Exit 1 on any difference.")
    verify.add_argument("project", type=Path, help="a compiled project folder (hls_projects/<name>)")
    verify.add_argument("--data", type=Path, help="also compare on the events of this dataset")
    verify.add_argument("--events", type=int, default=10000, help="events of --data to compare (default 10000)")
    verify.set_defaults(func=_verify)
