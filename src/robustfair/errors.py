"""Exceptions with messages meant for the person at the keyboard.

Every error the library raises on bad input is a subclass of `RobustfairError`; the
command line prints its message on one line and exits non-zero, never a traceback.
"""


class RobustfairError(Exception):
    """Base class of all errors raised for bad input or bad state."""


class ConfigError(RobustfairError, ValueError):
    """An invalid configuration value: the message names the field, the value and what is allowed."""


class UnknownNameError(ConfigError):
    """A name that is not in a registry; the message lists the valid names."""


class DataError(RobustfairError):
    """A dataset that cannot be read or fails validation."""


class ChecksumError(DataError):
    """A downloaded or local file whose checksum does not match the published one."""


class UnsafeArchiveError(DataError):
    """An archive member that would escape the target directory, or a link or device file."""


class CheckpointError(RobustfairError):
    """A checkpoint that is missing, corrupt or in an unsafe format."""


class RunLockedError(RobustfairError):
    """Another process is writing the run directory; the message names its PID and host."""

    def __init__(self, message: str, *, holder: object = None):
        super().__init__(message)
        self.holder = holder


class TrainingDivergedError(RobustfairError):
    """A non-finite loss or weight; the message names the epoch and step."""
