"""The pipeline's one entry point to the RTL backend: trace, pipeline, write, Verilate, verify."""

from __future__ import annotations

import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trigger.design.fixed import on_grid
from trigger.design.graph import Design
from trigger.errors import InputError

Arrays = list[np.ndarray] | np.ndarray  # one array per design input/output, or the only one


class StageLog(Protocol):
    """What `rtl_stage` needs of the pipeline's log: messages and timed stages."""

    def say(self, message: str) -> None: ...

    def stage(self, name: str) -> AbstractContextManager[None]: ...


def _flat(arrays: list[np.ndarray], n: int) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(n, -1) for a in arrays], axis=1)


def rtl_stage(design: Design, project_dir: Path, *, clock_period_ns: float, part: str, x_heldout: Arrays,
              emulator_out: Arrays, log: StageLog) -> tuple[dict[str, Any], np.ndarray]:
    """Write `project_dir`/rtl/ from the design and check its Verilated model against the emulator's
    outputs on the held-out inputs. Returns report.json's `rtl` section, whose `equivalence` is the leg
    emulator_vs_rtl (`trigger.equivalence.compare`), and the Verilated outputs, (events, outputs) in the
    order of `equivalence`'s matrices, for `equivalence.exact_events`. The RTL folder appears only
    complete; nothing is written when a step fails."""
    from trigger import equivalence
    from trigger.rtl import build, trace, verilate

    x_heldout = x_heldout if isinstance(x_heldout, list) else [x_heldout]
    env = verilate.toolchain()  # before minutes of tracing: a missing tool is said at once
    trace.check_traceable(design)
    for t, x in zip(design.inputs, x_heldout, strict=True):
        if not on_grid(x, t.type):
            raise InputError(f"{design.name}: held-out inputs of {t.name} are not values of {t.type.cpp()}")
    n = len(x_heldout[0])
    with log.stage("RTL trace (da4ml)"):
        traced = trace.trace(design)
    with log.stage("RTL pipeline"):
        pipelined = build.pipeline(traced, clock_period_ns, part)
    log.say(f"[trigger] RTL: {traced.n_ops} da4ml ops, {pipelined.derivation()}")
    with tempfile.TemporaryDirectory(prefix=f"trigger-rtl-{design.name}-") as tmp:
        folder = Path(tmp) / "rtl"
        start = time.perf_counter()
        build.write_project(pipelined, design, folder, part)
        written = time.perf_counter() - start
        with log.stage("Verilator build"):
            start = time.perf_counter()
            sim = verilate.build(folder, design.name, env)
            verilated = time.perf_counter() - start
        with log.stage("RTL simulation"):
            out, speed = verilate.simulate(sim, _flat(x_heldout, n))
            eq = equivalence.compare(emulator_out, out)
        build.write_readme(folder, pipelined, design, part, eq)
        build.install(folder, Path(project_dir) / "rtl")
    return {
        "latency_cycles": pipelined.stages,
        "latency_ns": pipelined.latency_ns,
        "ii": 1,
        "stages": pipelined.stages,
        "clock_period_ns": clock_period_ns,
        "levels_per_stage": pipelined.levels_per_stage,
        "latency_derivation": pipelined.derivation(),
        "family": pipelined.family.yosys,
        "da4ml_estimate": pipelined.estimate(),
        "da4ml_ops": traced.n_ops,
        "trace_seconds": round(traced.seconds, 3),
        "build_seconds": round(pipelined.seconds + written + verilated, 3),
        "verilator_seconds": round(verilated, 3),
        **speed,
        "equivalence": eq,
        "dir": "rtl",
    }, out

