"""Errors that map onto the CLI's exit codes.

Exit code 2 means the user's input is wrong (config, file, dataset, model); exit code 1 means the input
was fine but a check failed (not bit-exact, over budget). Both carry a one-line message that names the
field or file at fault.
"""

from __future__ import annotations


class TriggerError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 2


class InputError(TriggerError):
    """Bad input: a malformed config, a missing or corrupt file, an unsupported layer."""

    exit_code = 2


class ConfigError(InputError):
    """A config field is missing, unknown or out of range; the message starts with the field's path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class CheckFailed(TriggerError):
    """The design was built but a check failed (bit-exactness, latency or resource budget)."""

    exit_code = 1


class Terminated(BaseException):
    """SIGTERM, raised by the CLI's handler so that it unwinds like Ctrl-C: every `with` block (the output
    staging folder above all) cleans up. A BaseException, so no `except Exception` can swallow it."""
