"""Compute a scan's missing points on Dask: one full `compile_config` per point, each in its own folder.

A point is done when its result file exists: the worker writes it last, atomically, so an interrupted scan,
a killed worker or a lost node costs only the points that were running, and a rerun computes only the
missing ones. A point that fails (an exception, or a failed check such as over budget, whose report is still
written) is recorded with its error, and the other points go on.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from trigger.errors import CheckFailed, InputError
from trigger.scan.cluster import WORKER_ENV, dask_client
from trigger.scan.config import Point, ScanConfig

if TYPE_CHECKING:
    from distributed import Client

RESULT = "result.json"
CONFIG = "config.yaml"
LOG = "log.txt"


@dataclass
class RunSummary:
    """What one `trigger scan` run did, by point hash."""

    reused: list[str]
    left: list[str]  # not attempted this run (--limit)
    computed: list[str] = field(default_factory=list)
    lost: dict[str, str] = field(default_factory=dict)  # no result: the task itself died (worker lost)
    wall_s: float = 0.0


def point_dir(root: Path, point: Point) -> Path:
    return root / "points" / point.hash


def read_result(folder: Path) -> dict[str, Any] | None:
    """The point's result, or None when it has not finished (no file, or one that was never completed)."""
    try:
        return json.loads((folder / RESULT).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_atomic(path: Path, text: str) -> None:
    """Write under a temporary name and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def run_scan(scan: ScanConfig, root: Path, *, scheduler: str | None, workers: int, limit: int | None = None,
             retry_failed: bool = False, progress: bool = True, say: Callable[[str], None] = print,
             ) -> RunSummary:
    """Compute the points of `scan` under `root` that have no result yet (and failed ones with
    `retry_failed`), at most `limit` of them; returns what was done."""
    start = time.perf_counter()
    finished = {p.hash for p in scan.points
                if (r := read_result(point_dir(root, p))) is not None and not (retry_failed and r["status"] != "ok")}
    todo = [p for p in scan.points if p.hash not in finished]
    left = todo[limit:] if limit is not None else []
    todo = todo[:limit] if limit is not None else todo
    summary = RunSummary(reused=sorted(finished), left=[p.hash for p in left])
    if not todo:
        return summary
    with dask_client(scheduler, workers) as client:
        _check_one_thread(client)
        where = scheduler or f"a local cluster of {workers} processes"
        say(f"[scan] {scan.name}: {len(scan.points)} points, {len(finished)} already done, computing {len(todo)} "
            f"on {where}")
        _compute(client, todo, root, summary, progress=progress, say=say)
    summary.wall_s = time.perf_counter() - start
    return summary


def _compute(client: Client, todo: list[Point], root: Path, summary: RunSummary, *, progress: bool,
             say: Callable[[str], None]) -> None:
    from distributed import as_completed
    from tqdm import tqdm

    futures = {client.submit(run_point, str(point_dir(root, p).resolve()), _portable(p.config), p.axes, p.hash,
                             pure=False): p for p in todo}
    interactive = progress and sys.stderr.isatty()
    with tqdm(total=len(todo), unit="point", desc="scan", disable=not interactive, dynamic_ncols=True) as bar:
        for n, future in enumerate(as_completed(futures), start=1):
            point = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # the task died with its worker: the point stays missing
                summary.lost[point.hash] = f"{type(exc).__name__}: {exc}"
                outcome = f"lost ({summary.lost[point.hash]})"
            else:
                summary.computed.append(point.hash)
                outcome = result["status"] + (f": {result['error']}" if result["error"] else "")
            bar.update(1)
            if progress and not interactive:
                say(f"[scan] {n}/{len(todo)} {point.hash} {outcome}")


def _check_one_thread(client: Client) -> None:
    for address, threads in client.nthreads().items():
        if threads != 1:
            raise InputError(f"--scheduler: worker {address} runs {threads} threads; a scan needs one-thread "
                             f"workers (dask worker --nthreads 1 --nworkers N): TensorFlow's seeds are per process")


def _portable(config: dict[str, Any]) -> dict[str, Any]:
    """The config a worker runs: the data file made absolute (it is relative to this working directory, and a
    worker may run elsewhere on the shared file system); the hash keeps the path as written."""
    config = copy.deepcopy(config)
    config["data"]["file"] = str(Path(config["data"]["file"]).resolve())
    return config


def run_point(folder: str, config: dict[str, Any], axes: dict[str, Any], point: str) -> dict[str, Any]:
    """Dask task: one full `trigger compile` of `config` into `folder`, then its result file. Output of the
    compile (TensorFlow, hls4ml, g++) goes to the point's log.txt, not to the scan's terminal."""
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    root = Path(folder)
    shutil.rmtree(root, ignore_errors=True)  # whatever an interrupted attempt left
    root.mkdir(parents=True)
    (root / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    with (root / LOG).open("w") as log, _output_to(log):
        status, error = _compile(root)
    report = root / "hls_projects" / config["name"] / "report.json"
    result = {"point": point, "axes": axes, "status": status, "error": error,
              "wall_s": round(time.perf_counter() - start, 2), "host": socket.gethostname(),
              "report": str(report.relative_to(root)) if report.is_file() else None}
    write_atomic(root / RESULT, json.dumps(result, indent=2) + "\n")
    return result


def _compile(root: Path) -> tuple[str, str | None]:
    from tensorflow import keras

    from trigger.pipeline import CompileOptions, compile_config

    keras.backend.clear_session()  # nothing of the previous point in this worker
    try:
        compile_config(root / CONFIG, CompileOptions(out_root=root, quiet=True))
    except CheckFailed as exc:  # the project and report are written: the figures stay readable
        return "failed", f"check failed: {exc}"
    except Exception as exc:  # recorded as this point's result; the scan goes on
        traceback.print_exc()
        return "failed", f"{type(exc).__name__}: {exc}"
    return "ok", None


@contextmanager
def _output_to(log: IO[str]) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors, so C++ and g++ output too) to `log`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy_fd in zip((1, 2), saved, strict=True):
            os.dup2(copy_fd, fd)
            os.close(copy_fd)
