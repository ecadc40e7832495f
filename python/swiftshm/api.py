"""The Python API over the C ABI (see the package docstring)."""
from __future__ import annotations

import ctypes
from ctypes import byref, c_int32, c_uint32, c_uint64, c_void_p
from typing import Any, AsyncIterator, Dict, Iterator, Optional, Sequence

from . import _lib
from ._handles import InPlace, Writable, _array, _create, _Handle, _ns, address_of, nbytes_of
from .errors import StateError, check
from .request_response import RequestResponse
from .waitset import wait_readable

_c = _lib.lib


def abi_version() -> tuple[int, int]:
    """The loaded libswiftshm's ABI version (major, minor)."""
    v = _c.shm_abi_version()
    return v >> 16, v & 0xFFFF


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

    def request_response(self, service: str, *, max_request_bytes: int = 4096, max_response_bytes: int = 4096,
                         type_name: Optional[str] = None, alignment: int = 1, max_clients: int = 8, max_servers: int = 2,
                         queue_depth: int = 16, mode: str = "open_or_create") -> RequestResponse:
        """Opens or creates a request/response service.

        Byte messages of up to ``max_request_bytes`` / ``max_response_bytes``
        unless ``type_name`` names the request and response types every
        language agrees on (what a Swift service was given as ``typeName:``;
        then the sizes are the types' sizes and ``alignment`` the request
        type's). Raises ``Incompatible`` naming every difference if the
        service exists with another configuration.
        """
        options = _lib.ReqResOptions()
        _c.shm_reqres_options_init(byref(options))
        options.type_name = type_name.encode() if type_name else None
        options.request_size = max_request_bytes
        options.request_alignment = alignment
        options.response_size = max_response_bytes
        options.max_clients = max_clients
        options.max_servers = max_servers
        options.queue_depth = queue_depth
        options.open_mode = _lib.OPEN_MODE[mode]
        pointer = _create(_c.shm_reqres_open, self._handle.pointer, service.encode(), byref(options))
        return RequestResponse(_Handle(pointer, _c.shm_reqres_free, keep=self._handle), service)

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

    def publisher(self, pool: str = "automatic") -> "Publisher":
        """A publisher. ``pool``: how its pool gets shared memory — "automatic"
        (grows when reserving would take more than 1 MiB), "reserved" (all
        the service's limits allow in flight, at once) or "growing" (from 8
        chunks of 64 bytes, as loans need more or larger chunks)."""
        if not isinstance(pool, str) or pool not in _lib.POOL:
            raise ValueError(f"pool must be one of {sorted(_lib.POOL)}, not {pool!r}")
        return Publisher(_Handle(_create(_c.shm_publisher_create_with_pool, self._handle.pointer, _lib.POOL[pool]),
                                 _c.shm_publisher_free, keep=self._handle))

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

    @property
    def footprint(self) -> Dict[str, int]:
        """The pool in /dev/shm now: ``bytes``, ``segments``, ``chunks`` and
        ``chunk_capacity`` (bytes a loanable chunk holds)."""
        nbytes, segments, chunks, capacity = c_uint64(), c_uint32(), c_uint64(), c_uint64()
        check(_c.shm_publisher_footprint(self._handle.pointer, byref(nbytes), byref(segments), byref(chunks), byref(capacity)))
        return {"bytes": nbytes.value, "segments": segments.value, "chunks": chunks.value, "chunk_capacity": capacity.value}

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
        nbytes = nbytes_of(nbytes, shape, dtype)
        check(_c.shm_publisher_loan(self._handle.pointer, nbytes, self._loan_ref, self._data_ref))
        return Loan(_Handle(self._loan.value, _c.shm_loan_discard, keep=self._handle), self._data.value, nbytes, shape, dtype)

    def send_copy(self, data: Any) -> int:
        """Copies ``data`` (bytes, bytearray, memoryview, numpy array) into a
        sample and sends it — one foreign call, the quickest way for small
        messages; returns how many subscribers it reached."""
        pointer, size, _keep = address_of(data)
        check(_c.shm_publisher_send_copy(self._handle.pointer, pointer, size, self._reached_ref))
        return self._reached.value

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class Loan(Writable):
    """A sample being written in the publisher's shared pool.

    ``array`` (numpy) or ``memoryview`` write straight into shared memory.
    After ``send()`` the memory belongs to the subscribers: the arrays this
    loan handed out are made read-only, and must not be used any more.
    """

    __slots__ = ()

    def send(self) -> int:
        """Sends to every connected subscriber (no copy); returns how many it reached."""
        pointer = self._take_for_send()
        reached = c_uint32()
        check(_c.shm_loan_send(pointer, byref(reached)))
        return reached.value

    def __enter__(self) -> "Loan":
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if self._handle.pointer is not None:
            if kind is None:
                self.send()
            else:
                self.discard()


class Sample(InPlace):
    """A received sample, read in place in the publisher's shared memory.

    Its chunk stays held (the publisher cannot reuse it) while this object
    or any view made from it — ``memoryview``, ``array()``, their slices —
    is alive; it is handed back once the last one goes. ``release()`` hands
    it back now and raises ``BufferError`` if views still exist.
    """

    __slots__ = ()

    @property
    def sequence(self) -> int:
        """The publisher's number of this sample (1, 2, …)."""
        return _c.shm_sample_sequence(self._pointer())

    @property
    def publisher_id(self) -> int:
        return _c.shm_sample_publisher(self._pointer())


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
        fd = self.fileno()
        while True:
            sample = self.try_receive()
            if sample is not None:
                return sample
            try:
                await wait_readable(fd)
            finally:
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
