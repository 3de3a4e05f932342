"""Outputs that cannot collide or linger (issue 9): concurrent commits into one output root, SIGTERM
during a compile, staging folders of dead processes, outputs that cannot be written."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trigger.errors import InputError
from trigger.staging import Staging

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 80


def _stage_and_commit(root: str, run: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    """One compile's output step: a small project and its scripts, both stamped with the run."""
    base = Path(root)
    with Staging(base / "hls_projects" / "x", base / "vivado_scripts" / "x") as staging:
        for folder in (staging.project, staging.scripts):
            (folder / "sub").mkdir(parents=True)
            for i in range(5):
                (folder / "sub" / f"f{i}").write_text(str(run))
            (folder / "run").write_text(str(run))
        barrier.wait()  # both processes commit at the same moment
        staging.commit()


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".*") if ".old-" in p.name or p.name.startswith(".trigger-")]


def test_concurrent_commits_end_in_one_consistent_project(tmp_path: Path) -> None:
    """Two processes released together commit into the same root, many times: every commit succeeds and the
    end state is always one run's complete project next to the same run's scripts, with nothing left over."""
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for trial in range(TRIALS):
        root = tmp_path / f"t{trial}"
        if trial % 2:  # half of the trials replace an earlier run's outputs
            for folder in (root / "hls_projects" / "x", root / "vivado_scripts" / "x"):
                folder.mkdir(parents=True)
                (folder / "run").write_text("earlier")
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_stage_and_commit, args=(str(root), run, barrier)) for run in (1, 2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert [p.exitcode for p in procs] == [0, 0], f"trial {trial}: a commit failed"
        project, scripts = root / "hls_projects" / "x", root / "vivado_scripts" / "x"
        winner = (project / "run").read_text()
        assert winner in ("1", "2"), f"trial {trial}"
        assert (scripts / "run").read_text() == winner, f"trial {trial}: project and scripts of different runs"
        for folder in (project, scripts):
            assert sorted(p.read_text() for p in (folder / "sub").iterdir()) == [winner] * 5, f"trial {trial}"
        assert not _leftovers(root), f"trial {trial}: {_leftovers(root)}"
        outcomes.append(winner)
    assert set(outcomes) <= {"1", "2"}


def test_commit_reports_what_it_replaced(tmp_path: Path) -> None:
    project, scripts = tmp_path / "hls_projects" / "x", tmp_path / "vivado_scripts" / "x"
    with Staging(project, scripts) as staging:
        staging.project.mkdir(parents=True)
        staging.scripts.mkdir(parents=True)
        assert staging.commit() == []
    with Staging(project, scripts) as staging:
        staging.project.mkdir(parents=True)
        staging.scripts.mkdir(parents=True)
        assert staging.commit() == [project.resolve(), scripts.resolve()]


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    staging = Staging(out / "hls_projects" / "x", out / "vivado_scripts" / "x")

    def failing_run() -> None:
        with staging:
            staging.project.mkdir(parents=True)
            raise RuntimeError("a stage failed")

    with pytest.raises(RuntimeError):
        failing_run()
    assert not out.exists()


def test_staging_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".trigger-x-{dead_pid}-abc123"
    live = tmp_path / f".trigger-y-{os.getpid()}-def456"
    for folder in (stale, live):
        (folder / "hls_projects").mkdir(parents=True)
    with Staging(tmp_path / "hls_projects" / "x", tmp_path / "vivado_scripts" / "x"):
        pass
    assert not stale.exists()
    assert live.exists()  # a compile still running


SIGTERM_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from trigger.cli import sigterm_unwinds
    from trigger.errors import Terminated
    from trigger.staging import Staging

    out = Path(sys.argv[1])
    try:
        with sigterm_unwinds(), Staging(out / "hls_projects" / "x", out / "vivado_scripts" / "x") as s:
            s.project.mkdir(parents=True)
            (s.project / "big.bin").write_bytes(b"0" * 1_000_000)
            print("staged", flush=True)
            time.sleep(60)
    except Terminated:
        sys.exit(143)
""")


def test_sigterm_removes_the_staging_folder(tmp_path: Path) -> None:
    """SIGTERM during a compile (here: while the staging folder holds a project) unwinds like Ctrl-C."""
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", SIGTERM_CHILD, str(out)], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "staged"
    assert list(out.glob(".trigger-x-*"))
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 143
    assert not out.exists()


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("")
    with pytest.raises(InputError, match=r"^--out: .*afile is a file, not a folder$"):
        Staging(a_file / "hls_projects" / "x", a_file / "vivado_scripts" / "x", fields=("--out", "--out"))
    read_only = tmp_path / "ro"
    read_only.mkdir()
    # Permission bits do not stop root (the CI container), so the refusal is simulated at os.access.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != read_only and real_access(p, mode))
    with pytest.raises(InputError, match=r"^output.projects_dir: .*ro is not writable$"):
        Staging(read_only / "hls_projects" / "x", read_only / "vivado_scripts" / "x")
    assert list(read_only.iterdir()) == []
