"""`trigger data generate` on a Dask cluster (the same bytes as on one machine), and SIGTERM cleaning up as
Ctrl-C does."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from trigger.cli import main
from trigger.data import generate


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generation_on_a_dask_cluster_is_bit_identical(tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        argv = ["data", "generate", "jets", "--events", "15", "--seed", "21", "--out", str(tmp_path / "dask.h5"),
                "--scheduler", cluster.scheduler_address, "--quiet"]
        assert main(argv) == 0
    local = generate("jets", 15, 21, tmp_path / "local.h5", workers=1, progress=False)
    assert _digest(tmp_path / "dask.h5") == _digest(local)


def test_workers_and_scheduler_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["data", "generate", "jets", "--events", "5", "--seed", "1", "--workers", "2",
              "--scheduler", "tcp://127.0.0.1:8786", "--out", str(tmp_path / "x.h5")])
    assert exit_.value.code == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_removes_the_temporary_file(workers: int, tmp_path: Path) -> None:
    out = tmp_path / "jets.h5"
    proc = subprocess.Popen([sys.executable, "-m", "trigger", "data", "generate", "jets", "--events", "100000",
                             "--seed", "1", "--workers", str(workers), "--out", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".jets.h5.*.tmp")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)  # well into the generation: the HDF5 file is open, chunks are running
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == (workers if workers > 1 else 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert list(tmp_path.iterdir()) == []
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
