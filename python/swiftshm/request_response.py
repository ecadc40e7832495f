"""Request/response (``shm_reqres_*``, ``shm_client_*``, ``shm_server_*``):
clients loan a request, servers answer with one response or a stream of
them. Requests and responses are loaned in their sender's pool in shared
memory and written there; responses are read in place in the server's pool.
A server's request is a copy (it may be answered from any thread); its
chunk goes back to the client as it is received."""
from __future__ import annotations

from ctypes import byref, c_int, c_uint64, c_void_p
from typing import Any, Iterator, Optional, Sequence

from . import _lib
from ._handles import InPlace, Writable, _create, _Handle, _ns, address_of, nbytes_of
from .errors import StateError, check

_c = _lib.lib


class RequestResponse:
    """A request/response service; make clients and servers from it.

    Requests hold at most ``max_request_bytes`` bytes, responses at most
    ``max_response_bytes``; each message carries its own length.
    """

    def __init__(self, handle: _Handle, name: str):
        self._handle = handle
        self.name = name

    @property
    def max_request_bytes(self) -> int:
        return _c.shm_reqres_max_request_bytes(self._handle.pointer)

    @property
    def max_response_bytes(self) -> int:
        return _c.shm_reqres_max_response_bytes(self._handle.pointer)

    def client(self) -> "Client":
        return Client(_Handle(_create(_c.shm_client_create, self._handle.pointer), _c.shm_client_free, keep=self._handle))

    def server(self) -> "Server":
        return Server(_Handle(_create(_c.shm_server_create, self._handle.pointer), _c.shm_server_free, keep=self._handle))

    def close(self) -> None:
        self._handle.close()


class Client:
    """Sends requests and receives their responses. One thread at a time."""

    def __init__(self, handle: _Handle):
        self._handle = handle
        self._loan, self._data, self._pending = c_void_p(), c_void_p(), c_void_p()

    def set_send_timeout(self, timeout: Optional[float]) -> None:
        """How long a send waits for room in a server's queue (seconds; default 1).
        A request sent before any server runs waits in the client (up to the
        queue depth) and goes to the first server when the client next sends
        or waits for a response."""
        check(_c.shm_client_set_send_timeout(self._handle.pointer, _ns(timeout)))

    def loan(self, nbytes: Optional[int] = None, *, shape: Optional[Sequence[int]] = None,
             dtype: Any = "uint8") -> "RequestLoan":
        """Loans a request of ``nbytes`` bytes (or ``shape`` × ``dtype``):
        fill ``array`` / ``memoryview`` in place, then ``send()``."""
        nbytes = nbytes_of(nbytes, shape, dtype)
        check(_c.shm_client_loan(self._handle.pointer, nbytes, byref(self._loan), byref(self._data)))
        return RequestLoan(_Handle(self._loan.value, _c.shm_request_discard, keep=self._handle), self._data.value, nbytes,
                           shape, dtype)

    def send_copy(self, data: Any) -> "PendingResponse":
        """Copies ``data`` (bytes, bytearray, memoryview, numpy array) into a
        request and sends it in one call."""
        pointer, size, _keep = address_of(data)
        check(_c.shm_client_send_copy(self._handle.pointer, pointer, size, byref(self._pending)))
        return PendingResponse(_Handle(self._pending.value, _c.shm_pending_response_free, keep=self._handle))

    def request(self, data: Any, timeout: Optional[float] = 1.0) -> "Response":
        """Sends ``data`` and returns its (first) response."""
        return self.send_copy(data).receive(timeout)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class RequestLoan(Writable):
    """A request being written in place; ``send()`` returns its ``PendingResponse``."""

    __slots__ = ()

    def send(self) -> "PendingResponse":
        pointer = self._take_for_send()
        pending = c_void_p()
        check(_c.shm_request_send(pointer, byref(pending)))
        return PendingResponse(_Handle(pending.value, _c.shm_pending_response_free, keep=self._handle.keep))


class PendingResponse:
    """A request sent, and the responses still to come for it."""

    def __init__(self, handle: _Handle):
        self._handle = handle
        self.finished = False

    @property
    def request_id(self) -> int:
        return _c.shm_pending_response_id(self._handle.pointer)

    def receive(self, timeout: Optional[float] = 1.0) -> "Response":
        """The next response, read in place, waiting at most ``timeout``
        seconds (``TimedOut``); ``StateError`` after the final one."""
        response, data, size, final = c_void_p(), c_void_p(), c_uint64(), c_int()
        check(_c.shm_pending_response_receive(self._handle.pointer, _ns(timeout), byref(response), byref(data),
                                              byref(size), byref(final)))
        self.finished = bool(final.value)
        return Response(_Handle(response.value, _c.shm_response_release, keep=self._handle.keep), data.value or 0,
                        size.value, self.finished)

    def __iter__(self) -> Iterator["Response"]:
        """Every response of a stream, the final one last (1 s timeout each)."""
        while not self.finished:
            yield self.receive()


class Response(InPlace):
    """A response, read in place (``memoryview``, ``array()``, ``bytes()``);
    ``is_final`` is true for the last response of its request."""

    __slots__ = ("is_final",)

    def __init__(self, handle: _Handle, address: int, nbytes: int, is_final: bool):
        super().__init__(handle, address, nbytes)
        self.is_final = is_final


class Server:
    """Receives requests and answers them. ``receive`` from one thread;
    each request may be answered from any thread."""

    def __init__(self, handle: _Handle):
        self._handle = handle
        self._request, self._data, self._size = c_void_p(), c_void_p(), c_uint64()

    def set_send_timeout(self, timeout: Optional[float]) -> None:
        """How long a response waits for room in the client's queue (seconds; default 1)."""
        check(_c.shm_server_set_send_timeout(self._handle.pointer, _ns(timeout)))

    def receive(self, timeout: Optional[float] = None) -> "ActiveRequest":
        """The next request, read in place, waiting at most ``timeout``
        seconds (None: for ever; ``TimedOut``)."""
        check(_c.shm_server_receive(self._handle.pointer, _ns(timeout), byref(self._request), byref(self._data),
                                    byref(self._size)))
        return ActiveRequest(_Handle(self._request.value, _c.shm_active_request_free, keep=self._handle),
                             self._data.value or 0, self._size.value)

    def __iter__(self) -> Iterator["ActiveRequest"]:
        while True:
            yield self.receive()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class ActiveRequest(InPlace):
    """A request taken by a server, read in place, and the way back to its
    client: ``loan()`` a response and ``send()`` it, or ``respond(data)``.
    Responses are sent before ``release()`` (which ends the exchange)."""

    __slots__ = ()

    @property
    def client_id(self) -> int:
        return _c.shm_active_request_client(self._pointer())

    @property
    def request_id(self) -> int:
        return _c.shm_active_request_id(self._pointer())

    def loan(self, nbytes: Optional[int] = None, *, shape: Optional[Sequence[int]] = None,
             dtype: Any = "uint8") -> "ResponseLoan":
        """Loans a response of ``nbytes`` bytes (or ``shape`` × ``dtype``)."""
        nbytes = nbytes_of(nbytes, shape, dtype)
        loan, data = c_void_p(), c_void_p()
        check(_c.shm_active_request_loan(self._pointer(), nbytes, byref(loan), byref(data)))
        return ResponseLoan(_Handle(loan.value, _c.shm_response_discard, keep=self._handle), data.value, nbytes, shape,
                            dtype)

    def respond(self, data: Any, final: bool = True) -> bool:
        """Copies ``data`` into a response and sends it (``final=False`` for a
        stream that continues); False if the client is gone."""
        pointer, size, _keep = address_of(data)
        delivered = c_int()
        check(_c.shm_active_request_respond_copy(self._pointer(), pointer, size, 1 if final else 0, byref(delivered)))
        return bool(delivered.value)


class ResponseLoan(Writable):
    """A response being written in place."""

    __slots__ = ()

    def send(self, final: bool = True) -> bool:
        """Sends it (``final=False``: more follow); False if the client is gone."""
        if self._handle.keep.pointer is None:
            raise StateError("the request was released")
        pointer = self._take_for_send()
        delivered = c_int()
        check(_c.shm_response_send(pointer, 1 if final else 0, byref(delivered)))
        return bool(delivered.value)
