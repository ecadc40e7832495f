"""The Python API over the C ABI (see the package docstring)."""
from __future__ import annotations

import asyncio
import ctypes
import sys
import weakref
from ctypes import byref, c_int32, c_uint32, c_uint64, c_void_p
from typing import Any, AsyncIterator, Iterator, Optional, Sequence

from . import _lib
from .errors import StateError, TimedOut, check

_c = _lib.lib

try:  # numpy is optional, but first-class
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None


def abi_version() -> tuple[int, int]:
    """The loaded libswiftshm's ABI version (major, minor)."""
    v = _c.shm_abi_version()
    return v >> 16, v & 0xFFFF


def _ns(timeout: Optional[float]) -> int:
    """Seconds (None: for ever) as the C ABI's nanoseconds (< 0: for ever)."""
    return -1 if timeout is None else max(0, int(timeout * 1e9))


def _array(view: memoryview, dtype: Any, shape: Optional[Sequence[int]]) -> Any:
    if _np is None:
        raise ImportError("numpy is needed for arrays: pip install numpy (memoryview works without)")
    array = _np.frombuffer(view, dtype=dtype)
    return array.reshape(shape) if shape is not None else array


class _Handle:
    """Owns one C handle; frees it once (explicitly or when collected)."""

    __slots__ = ("pointer", "_free", "keep", "__weakref__")

    def __init__(self, pointer: int, free: Any, keep: Any = None):
        self.pointer = pointer
        self._free = free
        self.keep = keep  # what must outlive this handle

    def close(self) -> None:
        pointer, self.pointer = self.pointer, None
        if pointer:
            self._free(pointer)

    def __del__(self) -> None:
        self.close()


def _create(function: Any, *arguments: Any) -> int:
    out = c_void_p()
    check(function(*arguments, byref(out)))
    return out.value


class Node:
    """A participant in services (``shm_node_create``); registers this process."""

    def __init__(self, name: str):
        self._handle = _Handle(_create(_c.shm_node_create, name.encode()), _c.shm_node_free)

    def publish_subscribe(self, service: str, *, max_bytes: int = 4096, type_name: Optional[str] = None,
                          alignment: int = 1, max_publishers: int = 8, max_subscribers: int = 8, buffer_size: int = 8,
                          history_size: int = 0, max_loans: int = 4, max_borrowed: int = 4, overflow: str = "overwrite",
                          mode: str = "open_or_create") -> "PublishSubscribe":
        """Opens or creates a publish/subscribe service.

        Byte slices of up to ``max_bytes`` bytes (what Swift's
        ``slicesOf: UInt8.self, maxLength:`` services carry) unless
        ``type_name`` names a fixed-size type every language agrees on
        (``max_bytes`` = its size, ``alignment`` its alignment).
        ``overflow``: "overwrite" (oldest), "discard" or "block".
        ``mode``: "open_or_create", "open" (``max_bytes=0``: whatever it
        carries) or "create". Raises ``Incompatible`` naming every
        difference if the service exists with another configuration.
        """
        options = _lib.PubSubOptions()
        _c.shm_pubsub_options_init(byref(options))
        options.type_name = type_name.encode() if type_name else None
        options.type_size = max_bytes
        options.type_alignment = alignment
        options.max_publishers = max_publishers
        options.max_subscribers = max_subscribers
        options.buffer_size = buffer_size
        options.history_size = history_size
        options.max_loans = max_loans
        options.max_borrowed = max_borrowed
        options.overflow = _lib.OVERFLOW[overflow]
        options.open_mode = _lib.OPEN_MODE[mode]
        pointer = _create(_c.shm_pubsub_open, self._handle.pointer, service.encode(), byref(options))
        return PublishSubscribe(_Handle(pointer, _c.shm_pubsub_free, keep=self._handle), service)

    def event(self, service: str, max_event_id: int = 63) -> "Event":
        """Opens or creates an event service (ids 0…max_event_id)."""
        pointer = _create(_c.shm_event_open, self._handle.pointer, service.encode(), max_event_id)
        return Event(_Handle(pointer, _c.shm_event_free, keep=self._handle))

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class PublishSubscribe:
    """A publish/subscribe service; make publishers and subscribers from it."""

    def __init__(self, handle: _Handle, name: str):
        self._handle = handle
        self.name = name

    @property
    def max_bytes(self) -> int:
        """The most payload bytes one sample holds."""
        return _c.shm_pubsub_max_bytes(self._handle.pointer)

    def publisher(self) -> "Publisher":
        return Publisher(_Handle(_create(_c.shm_publisher_create, self._handle.pointer), _c.shm_publisher_free,
                                 keep=self._handle))

    def subscriber(self) -> "Subscriber":
        return Subscriber(_Handle(_create(_c.shm_subscriber_create, self._handle.pointer), _c.shm_subscriber_free,
                                  keep=self._handle))

    def close(self) -> None:
        self._handle.close()


class Publisher:
    """Loans samples in its shared pool and sends them without copying."""

    def __init__(self, handle: _Handle):
        self._handle = handle
        # Out-parameters made once: a loan is one foreign call, not five objects.
        self._loan, self._data = c_void_p(), c_void_p()
        self._loan_ref, self._data_ref = byref(self._loan), byref(self._data)
        self._reached = c_uint32()
        self._reached_ref = byref(self._reached)

    @property
    def subscribers(self) -> int:
        count = c_uint32()
        check(_c.shm_publisher_subscribers(self._handle.pointer, byref(count)))
        return count.value

    def set_send_timeout(self, timeout: Optional[float]) -> None:
        """How long a send waits for room under the "block" policy (seconds)."""
        check(_c.shm_publisher_set_send_timeout(self._handle.pointer, _ns(timeout)))

    def wait_for_subscribers(self, count: int = 1, timeout: Optional[float] = 10.0) -> None:
        """Waits until ``count`` subscribers are connected; ``TimedOut`` otherwise."""
        check(_c.shm_publisher_wait_for_subscribers(self._handle.pointer, count, _ns(timeout)))

    def loan(self, nbytes: Optional[int] = None, *, shape: Optional[Sequence[int]] = None,
             dtype: Any = "uint8") -> "Loan":
        """Loans a sample of ``nbytes`` bytes (or enough for ``shape`` × ``dtype``)
        in shared memory. Fill ``loan.array`` / ``loan.memoryview`` in place,
        then ``send()``."""
        if nbytes is None:
            if shape is None:
                raise ValueError("give nbytes or shape")
            itemsize = _np.dtype(dtype).itemsize if _np is not None else 1
            nbytes = itemsize
            for extent in shape:
                nbytes *= int(extent)
        check(_c.shm_publisher_loan(self._handle.pointer, nbytes, self._loan_ref, self._data_ref))
        return Loan(_Handle(self._loan.value, _c.shm_loan_discard, keep=self._handle), self._data.value, nbytes, shape, dtype)

    def send_copy(self, data: Any) -> int:
        """Copies ``data`` (bytes, bytearray, memoryview, numpy array) into a
        sample and sends it — one foreign call, the quickest way for small
        messages; returns how many subscribers it reached."""
        if isinstance(data, bytes):
            check(_c.shm_publisher_send_copy(self._handle.pointer, data, len(data), self._reached_ref))
            return self._reached.value
        view = memoryview(data).cast("B")
        buffer = (ctypes.c_ubyte * len(view)).from_buffer_copy(view) if view.readonly else \
            (ctypes.c_ubyte * len(view)).from_buffer(view)
        check(_c.shm_publisher_send_copy(self._handle.pointer, ctypes.addressof(buffer), len(view), self._reached_ref))
        return self._reached.value

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class Loan:
    """A sample being written in the publisher's shared pool.

    ``array`` (numpy) or ``memoryview`` write straight into shared memory.
    After ``send()`` the memory belongs to the subscribers: the arrays this
    loan handed out are made read-only, and must not be used any more.
    """

    __slots__ = ("_handle", "nbytes", "_address", "_buffer", "_shape", "_dtype", "_arrays")

    def __init__(self, handle: _Handle, address: int, nbytes: int, shape: Any, dtype: Any):
        self._handle = handle
        self.nbytes = nbytes
        self._address = address
        self._buffer = None  # made on first use
        self._shape = shape
        self._dtype = dtype
        self._arrays: Optional[list] = None

    @property
    def memoryview(self) -> memoryview:
        if self._handle.pointer is None:
            raise StateError("the loan was sent or discarded")
        if self._buffer is None:
            self._buffer = (ctypes.c_ubyte * self.nbytes).from_address(self._address)
        return memoryview(self._buffer).cast("B")

    @property
    def array(self) -> Any:
        """The loan as a writable numpy array (shape and dtype of ``loan()``)."""
        array = _array(self.memoryview, self._dtype, self._shape)
        if self._arrays is None:
            self._arrays = []
        self._arrays.append(weakref.ref(array))
        return array

    def send(self) -> int:
        """Sends to every connected subscriber (no copy); returns how many it reached."""
        pointer, self._handle.pointer = self._handle.pointer, None
        if pointer is None:
            raise StateError("the loan was already sent or discarded")
        if self._arrays:
            for reference in self._arrays:
                array = reference()
                if array is not None:
                    array.flags.writeable = False
        reached = c_uint32()
        check(_c.shm_loan_send(pointer, byref(reached)))
        return reached.value

    def discard(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Loan":
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if self._handle.pointer is not None:
            if kind is None:
                self.send()
            else:
                self.discard()


class Sample:
    """A received sample, read in place in the publisher's shared memory.

    Its chunk stays held (the publisher cannot reuse it) while this object
    or any view made from it — ``memoryview``, ``array()``, their slices —
    is alive; it is handed back once the last one goes. ``release()`` hands
    it back now and raises ``BufferError`` if views still exist.
    """

    __slots__ = ("_handle", "nbytes", "_address", "_view", "_arrays", "_released")

    def __init__(self, handle: _Handle, address: int, nbytes: int):
        self._handle = handle
        self.nbytes = nbytes
        self._address = address
        self._view: Optional[memoryview] = None  # made on first use
        self._arrays: Optional[list] = None
        self._released = False

    @property
    def sequence(self) -> int:
        """The publisher's number of this sample (1, 2, …)."""
        return _c.shm_sample_sequence(self._handle.pointer)

    @property
    def publisher_id(self) -> int:
        return _c.shm_sample_publisher(self._handle.pointer)

    @property
    def memoryview(self) -> memoryview:
        if self._released:
            raise StateError("the sample was released")
        if self._view is None:
            buffer = (ctypes.c_ubyte * max(1, self.nbytes)).from_address(self._address)
            buffer._swiftshm_sample = self._handle  # every view keeps the chunk held
            self._view = memoryview(buffer).cast("B")[:self.nbytes].toreadonly()
        return self._view

    def array(self, dtype: Any = "uint8", shape: Optional[Sequence[int]] = None) -> Any:
        """A read-only numpy view of the payload (no copy)."""
        array = _array(self.memoryview, dtype, shape)
        if self._arrays is None:
            self._arrays = []
        self._arrays.append(weakref.ref(array))
        return array

    def bytes(self) -> bytes:
        """A copy of the payload."""
        return self.memoryview.tobytes()

    def release(self) -> None:
        """Hands the chunk back now. Raises ``BufferError`` while arrays from
        ``array()`` (or their slices) or references to ``memoryview`` exist:
        a view never outlives its sample's memory."""
        if self._released:
            return
        if self._view is not None:
            if (self._arrays and any(reference() is not None for reference in self._arrays)) \
                    or sys.getrefcount(self._view) > 2:
                raise BufferError("views of this sample still exist: delete them before release() "
                                  "(or drop the sample: it is handed back when its last view goes)")
            self._view.release()
            self._view = None
        self._released = True
        self._handle = None  # the last reference: the chunk is handed back (any view
        #                      made some other way keeps it held until it goes)

    def __enter__(self) -> "Sample":
        return self

    def __exit__(self, *_: Any) -> None:
        self.release()


class Subscriber:
    """Receives samples from every publisher of the service, in place."""

    def __init__(self, handle: _Handle):
        self._handle = handle
        # Out-parameters made once: a poll is one foreign call.
        self._sample, self._data, self._size = c_void_p(), c_void_p(), c_uint64()
        self._refs = (byref(self._sample), byref(self._data), byref(self._size))
        self._copy_buffer: Optional[Any] = None
        self._copy_size = c_uint64()
        self._copy_size_ref = byref(self._copy_size)

    def receive(self, timeout: Optional[float] = None) -> Sample:
        """The next sample, waiting at most ``timeout`` seconds (None: for
        ever, 0: not at all); ``TimedOut`` if none came."""
        check(_c.shm_subscriber_receive(self._handle.pointer, _ns(timeout), *self._refs))
        return Sample(_Handle(self._sample.value, _c.shm_sample_release, keep=self._handle), self._data.value or 0,
                      self._size.value)

    def try_receive(self) -> Optional[Sample]:
        """The next sample if one is waiting, else None (no exception on the
        empty path: cheap enough to poll)."""
        status = _c.shm_subscriber_receive(self._handle.pointer, 0, *self._refs)
        if status == _lib.E_TIMED_OUT:
            return None
        check(status)
        return Sample(_Handle(self._sample.value, _c.shm_sample_release, keep=self._handle), self._data.value or 0,
                      self._size.value)

    def try_receive_copy(self, capacity: Optional[int] = None) -> Optional[bytes]:
        """The next sample's payload as bytes (copied, the sample handed back
        at once), or None if none is waiting — one foreign call, for small
        messages."""
        size = capacity or 4096
        if self._copy_buffer is None or len(self._copy_buffer) < size:
            self._copy_buffer = ctypes.create_string_buffer(size)
        status = _c.shm_subscriber_receive_copy(self._handle.pointer, 0, self._copy_buffer, size, self._copy_size_ref)
        if status == _lib.E_TIMED_OUT:
            return None
        check(status)
        return self._copy_buffer.raw[:self._copy_size.value]

    @property
    def lost(self) -> int:
        """Samples the overflow policy dropped before this subscriber saw them."""
        return _c.shm_subscriber_lost(self._handle.pointer)

    def fileno(self) -> int:
        """A descriptor readable when samples may be waiting (for select,
        epoll, asyncio); drain with ``try_receive``, then ``rearm()``."""
        fd = c_int32()
        check(_c.shm_subscriber_fd(self._handle.pointer, byref(fd)))
        return fd.value

    def rearm(self) -> None:
        check(_c.shm_subscriber_rearm(self._handle.pointer))

    def __iter__(self) -> Iterator[Sample]:
        while True:
            yield self.receive()

    async def receive_async(self) -> Sample:
        """Waits in the event loop (no thread of its own: the descriptor)."""
        while True:
            sample = self.try_receive()
            if sample is not None:
                return sample
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            fd = self.fileno()
            loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
            try:
                sample = self.try_receive()  # arrived between the check and add_reader
                if sample is not None:
                    return sample
                await ready
            finally:
                loop.remove_reader(fd)
                self.rearm()

    def __aiter__(self) -> AsyncIterator[Sample]:
        return self._samples()

    async def _samples(self) -> AsyncIterator[Sample]:
        while True:
            yield await self.receive_async()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class Event:
    """An event service: notifiers signal ids, listeners wait for them."""

    def __init__(self, handle: _Handle):
        self._handle = handle

    def notifier(self) -> "Notifier":
        return Notifier(_Handle(_create(_c.shm_notifier_create, self._handle.pointer), _c.shm_notifier_free,
                                keep=self._handle))

    def listener(self) -> "Listener":
        return Listener(_Handle(_create(_c.shm_listener_create, self._handle.pointer), _c.shm_listener_free,
                                keep=self._handle))


class Notifier:
    def __init__(self, handle: _Handle):
        self._handle = handle

    def notify(self, event_id: int = 0) -> None:
        check(_c.shm_notify(self._handle.pointer, event_id))


class Listener:
    def __init__(self, handle: _Handle):
        self._handle = handle

    def wait(self, timeout: Optional[float] = None) -> list[int]:
        """Ids that fired since the last look (empty on timeout). Ids
        notified before this listener existed are not reported."""
        ids = (c_uint32 * 4096)()
        count = c_uint32()
        check(_c.shm_listener_wait(self._handle.pointer, _ns(timeout), ids, 4096, byref(count)))
        return list(ids[:count.value])


class Segment:
    """A named shared-memory segment (/dev/shm/swiftshm.<uid>.<name>)."""

    def __init__(self, handle: _Handle, name: str):
        self._handle = handle
        self.name = name
        self.size: int = _c.shm_segment_size(handle.pointer)
        buffer = (ctypes.c_ubyte * self.size).from_address(_c.shm_segment_data(handle.pointer))
        buffer._swiftshm_segment = handle  # views keep the mapping
        self.memoryview = memoryview(buffer).cast("B")

    @classmethod
    def create(cls, name: str, size: int) -> "Segment":
        """Creates it with ``size`` usable bytes reserved up front (``NoSpace``
        if /dev/shm cannot hold them); it stays until ``Segment.unlink``."""
        return cls(_Handle(_create(_c.shm_segment_create, name.encode(), size), _c.shm_segment_free), name)

    @classmethod
    def open(cls, name: str) -> "Segment":
        return cls(_Handle(_create(_c.shm_segment_open, name.encode()), _c.shm_segment_free), name)

    @staticmethod
    def unlink(name: str) -> None:
        check(_c.shm_segment_unlink(name.encode()))

    def array(self, dtype: Any = "uint8", shape: Optional[Sequence[int]] = None) -> Any:
        return _array(self.memoryview, dtype, shape)


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
