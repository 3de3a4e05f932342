"""`trigger data generate`: chunked, seeded, multi-process generation streamed into one HDF5 file.

Reproducibility: chunk k of stream s is generated from a seed derived from (seed, dataset, s, k) only, and
chunk results are consumed strictly in submission order (round r of every unfinished stream, then round r+1),
so the rows and the order of HDF5 writes - hence the file's bytes - do not depend on the number of workers, on
whether the chunks run in local processes or on a Dask cluster (`scheduler`), or on timing. Chunks submitted
ahead for a stream that turns out complete are discarded.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trigger.data.events import derive_seed, library_versions
from trigger.data.spec import DatasetSpec, Stream
from trigger.errors import InputError

DATASET_NAMES = ("jets", "ttbar", "l1", "zerobias")
FORMAT_VERSION = 1
WRITE_CHUNK_ROWS = 4096
MAX_EMPTY_CHUNKS = 50


DATASET_OPTIONS = {"zerobias": ("pileup", "library", "signal_fraction"),
                   "ttbar": ("btag_efficiency", "c_mistag", "light_mistag")}


def dataset_spec(name: str, options: dict[str, Any] | None = None) -> DatasetSpec:
    """The spec of a dataset by name and its own options (`DATASET_OPTIONS`); one-line InputError for unknown
    names and misplaced options."""
    if name not in DATASET_NAMES:
        raise InputError(f"dataset: unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    for key in options or {}:
        if key not in DATASET_OPTIONS.get(name, ()):
            owner = next((d for d, keys in DATASET_OPTIONS.items() if key in keys), "another")
            raise InputError(f"--{key.replace('_', '-')}: only the {owner} dataset takes it")
    if name == "zerobias":
        from trigger.data.zerobias import make_spec

        return make_spec(**(options or {}))
    if name == "ttbar":
        from trigger.data.ttbar import make_spec as make_ttbar_spec

        return make_ttbar_spec(**(options or {}))
    if name == "jets":
        from trigger.data.jets import SPEC
    else:
        from trigger.data.l1 import SPEC
    return SPEC


def _run_chunk(dataset: str, options: dict[str, Any], stream_index: int, n_events: int,
               seed: int) -> dict[str, np.ndarray]:
    """Worker entry point (module level so it pickles)."""
    spec = dataset_spec(dataset, options)
    return spec.make_chunk(spec.streams[stream_index], n_events, seed)


def _chunk_events(stream: Stream, quota: int) -> int:
    """Events per chunk: the stream's default, smaller for small requests (a function of the request only)."""
    needed = math.ceil(1.3 * quota / stream.rows_per_event) + 5
    return max(1, min(stream.chunk_events, needed))


def _validate(dataset: str, events: int, seed: int, workers: int, options: dict[str, Any] | None) -> DatasetSpec:
    spec = dataset_spec(dataset, options)
    if not isinstance(events, int) or events <= 0:
        raise InputError(f"--events: must be a positive integer, got {events!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InputError(f"--seed: must be an integer in [0, 2**32), got {seed!r}")
    if not isinstance(workers, int) or workers <= 0:
        raise InputError(f"--workers: must be a positive integer, got {workers!r}")
    return spec


def _temporary_path(out: Path) -> Path:
    """A writable temporary name beside `out`, so the final rename is atomic; one-line InputError if not."""
    if out.exists() and out.is_dir():
        raise InputError(f"{out}: is a directory, not a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create directory {out.parent}: {exc.strerror}") from None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.touch()
    except OSError as exc:
        raise InputError(f"{out}: cannot write: {exc.strerror}") from None
    return tmp


def generate(dataset: str, events: int, seed: int, out: str | Path | None = None, *, workers: int = 1,
             scheduler: str | None = None, progress: bool = True, options: dict[str, Any] | None = None) -> Path:
    """Generate `events` rows (jets for `jets`, crossings for `zerobias`, events otherwise) of `dataset` into
    `out` and return its path; the chunks run in `workers` local processes, or on the Dask cluster at
    `scheduler`. `options` are the dataset's own (`zerobias`: pileup, library, signal_fraction).

    The file appears only when complete: it is written under a temporary name and renamed at the end; the
    temporary file is removed on any failure, Ctrl-C and SIGTERM included.
    """
    spec = _validate(dataset, events, seed, workers, options)
    out = Path(out) if out is not None else Path("data") / f"{dataset}.h5"
    tmp = _temporary_path(out)
    try:  # the CLI turns SIGTERM into `Terminated`, which unwinds through here like Ctrl-C
        with _executor(workers, scheduler) as (submit, parallel):
            _write(spec, events, seed, tmp, submit=submit, parallel=parallel, progress=progress)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


Submit = Callable[[tuple], Callable[[], dict[str, np.ndarray]]]


@contextmanager
def _executor(workers: int, scheduler: str | None) -> Iterator[tuple[Submit, int]]:
    """`submit(args)` starts chunk `_run_chunk(*args)` and returns the call that waits for its rows; and how
    many chunks run at once. Inline for one worker (a chunk runs when its rows are asked for), a fork pool for
    several, a Dask client with `scheduler`."""
    if scheduler is not None:
        from trigger.scan.cluster import dask_client

        with dask_client(scheduler) as client:
            yield (lambda args: client.submit(_run_chunk, *args, pure=False).result), \
                max(1, sum(client.nthreads().values()))
    elif workers > 1:
        # Workers keep SIGTERM's default: the pool's own shutdown sends it, and they have nothing to clean up.
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=signal.signal,
                                                        initargs=(signal.SIGTERM, signal.SIG_DFL))
        try:
            yield (lambda args: pool.apply_async(_run_chunk, args).get), workers
        finally:
            pool.terminate()
            pool.join()
    else:
        yield (lambda args: functools.partial(_run_chunk, *args)), 1


def _tasks(spec: DatasetSpec, quotas: list[int], done: list[int]) -> Iterator[tuple[int, int]]:
    """(stream, chunk) in round-robin order over streams that still need rows when the task is drawn."""
    chunk = 0
    while any(d < q for d, q in zip(done, quotas, strict=False)):
        for s in range(len(spec.streams)):
            if done[s] < quotas[s]:
                yield s, chunk
        chunk += 1


def _write(spec: DatasetSpec, events: int, seed: int, path: Path, *, submit: Submit, parallel: int,
           progress: bool) -> None:
    from tqdm import tqdm

    quotas = spec.quotas(events)
    done = [0] * len(spec.streams)
    sizes = [_chunk_events(s, q) for s, q in zip(spec.streams, quotas, strict=False)]
    dataset_index = DATASET_NAMES.index(spec.name)
    window = 2 * parallel if parallel > 1 else 1
    with h5py.File(path, "w", track_order=False) as f:
        arrays = {
            name: f.create_dataset(
                name, shape=(events, *a.shape), dtype=a.dtype, compression="gzip", compression_opts=6,
                shuffle=True, chunks=(min(events, WRITE_CHUNK_ROWS), *a.shape), track_times=False)
            for name, a in spec.arrays.items()
        }
        pending: deque = deque()
        tasks = _tasks(spec, quotas, done)
        cursor = 0
        chunks_used = [0] * len(spec.streams)
        empty = [0] * len(spec.streams)
        with tqdm(total=events, unit=spec.unit, desc=f"generate {spec.name}", disable=not progress,
                  dynamic_ncols=True) as bar:
            while True:
                while len(pending) < window:
                    task = next(tasks, None)
                    if task is None:
                        break
                    s, k = task
                    pending.append((s, submit((spec.name, spec.options, s, sizes[s],
                                               derive_seed(seed, dataset_index, s, k)))))
                if not pending:
                    break
                s, wait = pending.popleft()
                rows = wait()
                if done[s] >= quotas[s]:
                    continue  # drawn ahead for a stream that has since been completed
                take = min(quotas[s] - done[s], len(next(iter(rows.values()))))
                empty[s] = empty[s] + 1 if take == 0 else 0
                if empty[s] >= MAX_EMPTY_CHUNKS:
                    raise RuntimeError(f"{spec.name}/{spec.streams[s].name}: no rows from "
                                       f"{MAX_EMPTY_CHUNKS} chunks in a row")
                for name, ds in arrays.items():
                    ds[cursor:cursor + take] = rows[name][:take]
                cursor += take
                done[s] += take
                chunks_used[s] += 1
                bar.update(take)
        manifest = _manifest(spec, seed, quotas=quotas, chunks_used=chunks_used, sizes=sizes)
        f.attrs["manifest"] = json.dumps(manifest, sort_keys=True)


def _manifest(spec: DatasetSpec, seed: int, *, quotas: list[int], chunks_used: list[int],
              sizes: list[int]) -> dict[str, Any]:
    """Everything needed to know what the file holds and to regenerate it (no timestamps: files must be
    bit-identical for the same seed)."""
    events = sum(quotas)
    processes = [
        {"name": s.name, "kind": s.kind, "label": s.label, "description": s.description,
         "pythia_settings": ["Beams:eCM = 13000.", *s.settings], "rows": q, "fraction": s.fraction,
         "events_per_chunk": n, "chunks_used": c}
        for s, q, n, c in zip(spec.streams, quotas, sizes, chunks_used, strict=False)
    ]
    return {
        "dataset": spec.name,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "rows": events,
        "rows_unit": spec.unit,
        "command": spec.command(events, seed),
        "generator": "Pythia 8 (pythia8mc) + FastJet, generated locally by trigger",
        "versions": library_versions(),
        "processes": processes,
        "settings": spec.settings,
        "counts": {s.name: q for s, q in zip(spec.streams, quotas, strict=False)},
        "class_counts": {c: sum(q for s, q in zip(spec.streams, quotas, strict=False) if s.label == i)
                         for i, c in enumerate(spec.class_names)},
        "feature_names": spec.feature_names,
        "class_names": spec.class_names,
        "arrays": {name: {"shape": ["N", *a.shape], "dtype": a.dtype, "description": a.description}
                   for name, a in spec.arrays.items()},
        **spec.extra_manifest,
    }
