"""Error hierarchy. The CLI turns any BenchbedError into one line on stderr and exit code 2."""

from __future__ import annotations


class BenchbedError(Exception):
    """Base for every error a user can cause or fix; carries an optional hint."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (hint: {self.hint})" if self.hint else base


class ConfigError(BenchbedError):
    """A suite or targets file is wrong; the message names file, line and key path."""


class TargetError(BenchbedError):
    """Something about a target (missing extra, bad definition)."""


class ProvisionError(TargetError):
    """The target could not be brought up (container, VM, session)."""


class TransportError(TargetError):
    """The channel to the target broke (connection dropped, file copy failed)."""


class CommandFailed(TargetError):
    """A command in the target exited non-zero where success was required."""


class AgentMismatch(TargetError):
    """The agent that answered is not the one this run shipped (another sha256, or modules from elsewhere)."""


class ProtocolError(TargetError):
    """The agent speaks another version of the wire protocol than this controller."""


class Interrupted(BenchbedError):
    """The run is stopping (Ctrl-C, or a bug in another lane): a lane ends its case early."""


class MissingExtra(BenchbedError):
    """An optional dependency (an `extra` of the benchbed package) is not installed; the hint names it."""


class WorkloadError(BenchbedError):
    """A workload name or parameter is unknown or invalid."""


class ResultsFormatError(BenchbedError):
    """A results directory is missing, corrupt or written by a newer benchbed."""


class StoreError(ResultsFormatError):
    """The results store cannot take a write (full, read-only, gone): the run ends, marked incomplete."""
