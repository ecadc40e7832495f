"""Typed errors: one Python exception per C ABI status (swiftshm.h SHM_E_*)."""
from __future__ import annotations

from . import _lib


class ShmError(Exception):
    """A swift-shm call failed; ``status`` is the C ABI's SHM_E_* code."""

    status = 0

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidArgument(ShmError, ValueError):
    status = _lib.E_INVALID_ARGUMENT


class NotFound(ShmError, LookupError):
    status = _lib.E_NOT_FOUND


class AlreadyExists(ShmError):
    status = _lib.E_EXISTS


class TimedOut(ShmError, TimeoutError):
    status = _lib.E_TIMED_OUT


class Incompatible(ShmError):
    """The service exists with another payload type or configuration."""
    status = _lib.E_INCOMPATIBLE


class NoSpace(ShmError):
    """/dev/shm or the disk cannot hold what was asked for."""
    status = _lib.E_NO_SPACE


class Exhausted(ShmError):
    """A pool, the loans, the borrowed samples or the ports are used up."""
    status = _lib.E_EXHAUSTED


class Corrupt(ShmError):
    """Damaged or hostile shared memory or file contents."""
    status = _lib.E_CORRUPT


class Truncated(ShmError):
    """A file or segment shrank under its mapping."""
    status = _lib.E_TRUNCATED


class SystemCallError(ShmError, OSError):
    status = _lib.E_SYSTEM


class StateError(ShmError):
    """A loan already sent, a sample already released."""
    status = _lib.E_STATE


_BY_STATUS = {cls.status: cls for cls in (InvalidArgument, NotFound, AlreadyExists, TimedOut, Incompatible, NoSpace,
                                          Exhausted, Corrupt, Truncated, SystemCallError, StateError)}


def check(status: int) -> None:
    """Raises the exception for a non-zero C ABI status."""
    if status == _lib.OK:
        return
    message = (_lib.lib.shm_last_error() or b"").decode("utf-8", "replace")
    raise _BY_STATUS.get(status, ShmError)(message, status)
