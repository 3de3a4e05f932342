"""Dask plumbing shared by `trigger scan` and `trigger data generate --scheduler`.

Workers are one-thread processes: TensorFlow's seeds and Keras's session are process-global, so two points
in one process would disturb each other's reproducibility, and one thread per process keeps TensorFlow,
OpenMP and BLAS from oversubscribing the cores.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from trigger.errors import InputError

if TYPE_CHECKING:
    from distributed import Client

# Set in every local worker before TensorFlow loads (it reads them once, at start-up).
WORKER_ENV = {
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


@contextmanager
def dask_client(scheduler: str | None, workers: int = 2) -> Iterator[Client]:
    """A client of the running cluster at `scheduler`, or of a new LocalCluster of `workers` one-thread
    processes on the loopback interface (closed, workers and all, on exit)."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, env=WORKER_ENV, silence_logs=logging.ERROR) as cluster, \
                Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler)  # waits distributed.comm.timeouts.connect (dask config, 30 s by default)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--scheduler: cannot connect to {scheduler}: {reason}") from None
    with client:
        yield client
