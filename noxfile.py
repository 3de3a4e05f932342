#!/usr/bin/env -S uv run --script
# /// script
# dependencies = ["nox"]
# ///
"""Task runner: `nox -s tests`, `nox -s lint`, `nox -s bench`."""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.10.14"
nox.options.default_venv_backend = "uv|virtualenv"


@nox.session(default=True)
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")


@nox.session(python=["3.11"], default=True)
def tests(session: nox.Session) -> None:
    session.install("-c", "requirements.lock", "-e", ".[test]")
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session(python=["3.11"], default=False)
def bench(session: nox.Session) -> None:
    session.install("-c", "requirements.lock", "-e", ".")
    session.run("python", "bench/bench_compile.py")


if __name__ == "__main__":
    nox.main()
