"""Outputs are written to a temporary tree and moved into place only when every stage has run.

The temporary tree mirrors the final one (projects and scripts keep their relative position), so the
vendor scripts' relative paths to the project stay right after the move. A failure removes the
temporary tree, and any output folder it had to create, and leaves earlier outputs untouched.

Several compiles may share one output root: the commit holds an exclusive lock on that root
(`fcntl.flock` on the folder itself, so no lock file is left behind), which makes the two renames of a
commit one step for every other compile: the end state is always one run's project with the same run's
scripts. The staging folder is named `.trigger-<name>-<pid>-*`, so a later compile removes the ones
left by a process that is gone (killed with SIGKILL, or a crashed machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from trigger.errors import InputError

_STAGED = re.compile(r"^\.trigger-[A-Za-z0-9_]+-(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class Staging:
    """`with Staging(final_project, final_scripts) as s:` write into `s.project` and `s.scripts`; call
    `s.commit()` to move both into place (replacing earlier outputs of the same name).

    The constructor only checks that the outputs can be written (so a compile can fail on that before any
    work); nothing is created before `__enter__`."""

    def __init__(self, project: Path, scripts: Path, *,
                 fields: tuple[str, str] = ("output.projects_dir", "output.scripts_dir")) -> None:
        self.final = (project.resolve(), scripts.resolve())
        self.common = Path(os.path.commonpath(self.final))
        self.root: Path | None = None
        self.created: list[Path] = []
        self.committed = False
        for final, field in zip(self.final, fields, strict=True):
            _check_writable(final, field)

    def __enter__(self) -> Staging:
        missing = [p for p in (self.common, *self.common.parents) if not p.exists()]
        try:
            self.common.mkdir(parents=True, exist_ok=True)
            self.created = missing  # innermost first: the order they are removed in on failure
            self._remove_stale()
            self.root = Path(tempfile.mkdtemp(prefix=f".trigger-{self.final[0].name}-{os.getpid()}-",
                                              dir=self.common))
        except OSError as exc:
            self._remove_created()
            raise InputError(f"{exc.filename or self.common}: cannot write outputs ({exc.strerror})") from None
        return self

    @property
    def project(self) -> Path:
        assert self.root is not None
        return self.root / self.final[0].relative_to(self.common)

    @property
    def scripts(self) -> Path:
        assert self.root is not None
        return self.root / self.final[1].relative_to(self.common)

    def commit(self) -> list[Path]:
        """Replace the final folders by the staged ones, as one step for any other compile into the same
        root; returns the final folders that held an earlier run's output."""
        replaced = []
        with _locked(self.common):
            for staged, final in ((self.project, self.final[0]), (self.scripts, self.final[1])):
                final.parent.mkdir(parents=True, exist_ok=True)
                for leftover in final.parent.glob(f".{final.name}.old-*"):
                    shutil.rmtree(leftover, ignore_errors=True)  # of a commit killed half-way
                if final.exists():
                    old = final.with_name(f".{final.name}.old-{os.getpid()}")
                    final.rename(old)
                    staged.rename(final)
                    shutil.rmtree(old)
                    replaced.append(final)
                else:
                    staged.rename(final)
        self.committed = True
        return replaced

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        if not self.committed:
            self._remove_created()

    def _remove_stale(self) -> None:
        """Staging folders of processes that no longer run (their `with` never got to clean up)."""
        for path in self.common.glob(".trigger-*"):
            match = _STAGED.match(path.name)
            if match and path.is_dir() and not _alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)

    def _remove_created(self) -> None:
        for path in self.created:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if still empty
        self.created = []


def _check_writable(final: Path, what: str) -> None:
    """`final` can be created or replaced: its nearest existing ancestor is a writable folder, and neither
    it nor an ancestor is a file."""
    for path in (final, *final.parents):
        if path.exists():
            if not path.is_dir():
                raise InputError(f"{what}: {path} is a file, not a folder")
            if not os.access(path if path != final else path.parent, os.W_OK | os.X_OK):
                raise InputError(f"{what}: {path} is not writable")
            return
