"""Wait sets (``shm_waitset_*``): wait on several subscribers, listeners and
servers at once — in a blocking call, or in asyncio through a descriptor."""
from __future__ import annotations

import asyncio
from ctypes import byref, c_int32, c_uint32, c_void_p
from typing import Any, Optional

from . import _lib
from ._handles import _create, _Handle, _ns
from .errors import check

_c = _lib.lib


async def wait_readable(fd: int) -> None:
    """Waits in the running event loop until ``fd`` is readable."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class WaitSet:
    """Subscribers, listeners and servers waited on together (one
    ``futex_waitv(2)`` on all of them; at most 127). ``attach`` returns the
    attachment's index, which ``wait`` reports when it is ready::

        frames, alarms = waitset.attach(subscriber), waitset.attach(listener)
        for index in waitset.wait(timeout=1.0):
            if index == frames: ...

    An attached port stays alive as long as the wait set does.
    """

    def __init__(self) -> None:
        self._handle = _Handle(_create(_c.shm_waitset_create), _c.shm_waitset_free)
        self._attached: list[Any] = []
        self._ready = (c_uint32 * 128)()
        self._count = c_uint32()

    def attach(self, port: Any) -> int:
        """Attaches a ``Subscriber`` (ready when a sample may be waiting), a
        ``Listener`` (an event id fired) or a ``Server`` (a request waits)."""
        from .api import Listener, Subscriber
        from .request_response import Server
        function = {Subscriber: _c.shm_waitset_attach_subscriber, Listener: _c.shm_waitset_attach_listener,
                    Server: _c.shm_waitset_attach_server}.get(type(port))
        if function is None:
            raise TypeError(f"a wait set attaches subscribers, listeners and servers, not {type(port).__name__}")
        index = c_uint32()
        check(function(self._handle.pointer, port._handle.pointer, byref(index)))
        self._attached.append(port)
        return index.value

    def wait(self, timeout: Optional[float] = None) -> list[int]:
        """Indices of the ready attachments, waiting at most ``timeout``
        seconds (None: for ever, 0: look only); empty on timeout."""
        check(_c.shm_waitset_wait(self._handle.pointer, _ns(timeout), self._ready, 128, byref(self._count)))
        return list(self._ready[:self._count.value])

    def fileno(self) -> int:
        """A descriptor readable when an attachment may be ready (for select,
        epoll, asyncio; a helper thread asleep in the kernel signals it):
        call ``wait(0)``, handle what it returns, then ``rearm()``."""
        fd = c_int32()
        check(_c.shm_waitset_fd(self._handle.pointer, byref(fd)))
        return fd.value

    def rearm(self) -> None:
        check(_c.shm_waitset_rearm(self._handle.pointer))

    async def wait_async(self) -> list[int]:
        """Waits in the event loop (no busy thread) until attachments are
        ready; returns their indices."""
        fd = self.fileno()
        while True:
            ready = self.wait(0)
            if ready:
                return ready
            try:
                await wait_readable(fd)
            finally:
                self.rearm()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "WaitSet":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
