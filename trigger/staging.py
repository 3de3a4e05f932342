"""Outputs are written to a temporary tree and moved into place only when every stage has run.

The temporary tree mirrors the final one (projects and scripts keep their relative position), so the
vendor scripts' relative paths to the project stay right after the move. A failure removes the
temporary tree and leaves any earlier outputs untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType


class Staging:
    """`with Staging(final_project, final_scripts) as s:` write into `s.project` and `s.scripts`; call
    `s.commit()` to move both into place (replacing earlier outputs of the same name)."""

    def __init__(self, project: Path, scripts: Path) -> None:
        self.final = (project.resolve(), scripts.resolve())
        self.common = Path(os.path.commonpath(self.final))
        self.root: Path | None = None
        self.committed = False

    def __enter__(self) -> Staging:
        self.common.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f".trigger-{self.final[0].name}-", dir=self.common))
        return self

    @property
    def project(self) -> Path:
        assert self.root is not None
        return self.root / self.final[0].relative_to(self.common)

    @property
    def scripts(self) -> Path:
        assert self.root is not None
        return self.root / self.final[1].relative_to(self.common)

    def commit(self) -> None:
        """Replace the final folders by the staged ones."""
        for staged, final in ((self.project, self.final[0]), (self.scripts, self.final[1])):
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                final.rename(old)
                staged.rename(final)
                shutil.rmtree(old)
            else:
                staged.rename(final)
        self.committed = True

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
