"""The persistent memory-mapped log (``shm_log_*``): appenders (append, or
claim → write in place → commit) and tailers."""
from __future__ import annotations

import ctypes
from ctypes import byref, c_uint64, c_void_p
from typing import Any, Iterator, Optional, Sequence

from . import _lib
from ._handles import Writable, _create, _Handle, _ns, nbytes_of
from .errors import TimedOut, check

_c = _lib.lib


class Record:
    """A log record (copied out of the log)."""

    __slots__ = ("sequence", "timestamp_ns", "data")

    def __init__(self, sequence: int, timestamp_ns: int, data: bytes):
        self.sequence = sequence
        self.timestamp_ns = timestamp_ns
        self.data = data

    def __repr__(self) -> str:
        return f"Record(sequence={self.sequence}, {len(self.data)} bytes)"


class Log:
    """The persistent memory-mapped log in ``directory`` (created if missing)."""

    def __init__(self, directory: str, segment_bytes: int = 0):
        self._handle = _Handle(_create(_c.shm_log_open, directory.encode(), segment_bytes), _c.shm_log_free)

    def appender(self) -> "Appender":
        return Appender(_Handle(_create(_c.shm_appender_create, self._handle.pointer), _c.shm_appender_free,
                                keep=self._handle))

    def tailer(self, from_sequence: int = 0) -> "Tailer":
        """From the oldest record (0), a sequence number, or the end (-1)."""
        start = (1 << 64) - 1 if from_sequence < 0 else from_sequence
        return Tailer(_Handle(_create(_c.shm_tailer_create, self._handle.pointer, start), _c.shm_tailer_free,
                              keep=self._handle))


class Appender:
    def __init__(self, handle: _Handle):
        self._handle = handle

    def append(self, data: Any) -> int:
        """Appends a record; returns its sequence number."""
        payload = bytes(data) if not isinstance(data, bytes) else data
        sequence = c_uint64()
        check(_c.shm_append(self._handle.pointer, payload, len(payload), byref(sequence)))
        return sequence.value

    def claim(self, nbytes: Optional[int] = None, *, shape: Optional[Sequence[int]] = None,
              dtype: Any = "uint8") -> "Claim":
        """Claims room for a record of ``nbytes`` bytes (or ``shape`` ×
        ``dtype``) in the mapped log: write ``array`` / ``memoryview`` in
        place, then ``commit()``. One claim per appender at a time; a claim
        aborted (or dropped, or left by a killed process) becomes a skip
        record that tailers step over. As a context manager it commits on
        success and aborts on an exception."""
        nbytes = nbytes_of(nbytes, shape, dtype)
        claim, data, sequence = c_void_p(), c_void_p(), c_uint64()
        check(_c.shm_appender_claim(self._handle.pointer, nbytes, byref(claim), byref(data), byref(sequence)))
        return Claim(_Handle(claim.value, _c.shm_claim_abort, keep=self._handle), data.value or 0, nbytes, shape, dtype,
                     sequence.value)


class Claim(Writable):
    """Room claimed in the log, written in place; ``sequence`` is the number
    the record will have."""

    __slots__ = ("sequence",)

    def __init__(self, handle: _Handle, address: int, nbytes: int, shape: Any, dtype: Any, sequence: int):
        super().__init__(handle, address, nbytes, shape, dtype)
        self.sequence = sequence

    def commit(self) -> int:
        """Publishes the record to tailers; returns its sequence number."""
        pointer = self._take_for_send()
        sequence = c_uint64()
        check(_c.shm_claim_commit(pointer, byref(sequence)))
        return sequence.value

    def abort(self) -> None:
        """Leaves a skip record instead."""
        self.discard()

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if self._handle.pointer is not None:
            if kind is None:
                self.commit()
            else:
                self.abort()


class Tailer:
    def __init__(self, handle: _Handle):
        self._handle = handle

    def next(self, timeout: Optional[float] = None) -> Record:
        """The next record, waiting at most ``timeout`` seconds; ``TimedOut`` if none."""
        record = c_void_p()
        data = c_void_p()
        size = c_uint64()
        sequence = c_uint64()
        timestamp = c_uint64()
        check(_c.shm_tailer_next(self._handle.pointer, _ns(timeout), byref(record), byref(data), byref(size),
                                 byref(sequence), byref(timestamp)))
        try:
            payload = ctypes.string_at(data.value, size.value) if size.value else b""
        finally:
            _c.shm_record_free(record.value)
        return Record(sequence.value, timestamp.value, payload)

    def __iter__(self) -> Iterator[Record]:
        while True:
            try:
                yield self.next(0)
            except TimedOut:
                return
