"""What every wrapper shares: owned C handles, timeouts, and the view-safe
base of everything read in place (samples, requests, responses)."""
from __future__ import annotations

import ctypes
import sys
import weakref
from ctypes import byref, c_void_p
from typing import Any, Optional, Sequence

from .errors import StateError, check

try:  # numpy is optional, but first-class
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None


def _ns(timeout: Optional[float]) -> int:
    """Seconds (None: for ever) as the C ABI's nanoseconds (< 0: for ever)."""
    return -1 if timeout is None else max(0, int(timeout * 1e9))


def _array(view: memoryview, dtype: Any, shape: Optional[Sequence[int]]) -> Any:
    if _np is None:
        raise ImportError("numpy is needed for arrays: pip install numpy (memoryview works without)")
    array = _np.frombuffer(view, dtype=dtype)
    return array.reshape(shape) if shape is not None else array


def nbytes_of(nbytes: Optional[int], shape: Optional[Sequence[int]], dtype: Any) -> int:
    """``nbytes``, or the bytes of an array of ``shape`` × ``dtype``."""
    if nbytes is not None:
        return nbytes
    if shape is None:
        raise ValueError("give nbytes or shape")
    size = _np.dtype(dtype).itemsize if _np is not None else 1
    for extent in shape:
        size *= int(extent)
    return size


def address_of(data: Any) -> tuple[Any, int, Any]:
    """A ctypes-passable pointer to the bytes of ``data`` (bytes, bytearray,
    memoryview, numpy array), its length, and what keeps it alive."""
    if isinstance(data, bytes):
        return data, len(data), data
    view = memoryview(data).cast("B")
    buffer = (ctypes.c_ubyte * len(view)).from_buffer_copy(view) if view.readonly else \
        (ctypes.c_ubyte * len(view)).from_buffer(view)
    return ctypes.addressof(buffer), len(view), buffer


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


class InPlace:
    """Bytes read in place, owned by a C handle (a sample, a request, a
    response): the handle — and so the memory — stays alive while this
    object or any view made from it (``memoryview``, ``array()``, their
    slices) is alive, and goes once the last one does. ``release()`` lets it
    go now and raises ``BufferError`` if views still exist: a view never
    outlives the memory it shows."""

    __slots__ = ("_handle", "nbytes", "_address", "_view", "_arrays", "_released")

    def __init__(self, handle: _Handle, address: int, nbytes: int):
        self._handle: Optional[_Handle] = handle
        self.nbytes = nbytes
        self._address = address
        self._view: Optional[memoryview] = None  # made on first use
        self._arrays: Optional[list] = None
        self._released = False

    def _pointer(self) -> Any:
        if self._handle is None:
            raise StateError(f"the {type(self).__name__.lower()} was released")
        return self._handle.pointer

    @property
    def memoryview(self) -> memoryview:
        """A read-only view of the bytes (no copy)."""
        if self._released:
            raise StateError(f"the {type(self).__name__.lower()} was released")
        if self._view is None:
            buffer = (ctypes.c_ubyte * max(1, self.nbytes)).from_address(self._address)
            buffer._swiftshm_owner = self._handle  # every view keeps the memory
            self._view = memoryview(buffer).cast("B")[:self.nbytes].toreadonly()
        return self._view

    def array(self, dtype: Any = "uint8", shape: Optional[Sequence[int]] = None) -> Any:
        """A read-only numpy view of the bytes (no copy)."""
        array = _array(self.memoryview, dtype, shape)
        if self._arrays is None:
            self._arrays = []
        self._arrays.append(weakref.ref(array))
        return array

    def bytes(self) -> bytes:
        """A copy of the bytes."""
        return self.memoryview.tobytes()

    def release(self) -> None:
        """Lets the memory go now. Raises ``BufferError`` while arrays from
        ``array()`` (or their slices) or references to ``memoryview`` exist."""
        if self._released:
            return
        if self._view is not None:
            if (self._arrays and any(reference() is not None for reference in self._arrays)) \
                    or sys.getrefcount(self._view) > 2:
                raise BufferError(f"views of this {type(self).__name__.lower()} still exist: delete them before "
                                  "release() (or drop it: its memory goes when its last view does)")
            self._view.release()
            self._view = None
        self._released = True
        self._handle = None  # the last reference: the memory goes (any view made
        #                      some other way keeps it until that view goes)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *_: Any) -> None:
        self.release()


class Writable:
    """Bytes being written in place before they are sent (a loan): ``array``
    (numpy) and ``memoryview`` write straight into the memory. After
    ``send()`` the memory is no longer the writer's: arrays this object
    handed out are made read-only and must not be used any more."""

    __slots__ = ("_handle", "nbytes", "_address", "_buffer", "_shape", "_dtype", "_arrays")

    def __init__(self, handle: _Handle, address: int, nbytes: int, shape: Any = None, dtype: Any = "uint8"):
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
            raise StateError(f"the {type(self).__name__.lower()} was sent or discarded")
        if self._buffer is None:
            self._buffer = (ctypes.c_ubyte * max(1, self.nbytes)).from_address(self._address)
        return memoryview(self._buffer).cast("B")[:self.nbytes]

    @property
    def array(self) -> Any:
        """A writable numpy array over the memory (shape and dtype of the loan)."""
        array = _array(self.memoryview, self._dtype, self._shape)
        if self._arrays is None:
            self._arrays = []
        self._arrays.append(weakref.ref(array))
        return array

    def _take_for_send(self) -> int:
        """The handle's pointer, taken: the loan is spent whatever follows."""
        pointer, self._handle.pointer = self._handle.pointer, None
        if pointer is None:
            raise StateError(f"the {type(self).__name__.lower()} was already sent or discarded")
        if self._arrays:
            for reference in self._arrays:
                array = reference()
                if array is not None:
                    array.flags.writeable = False
        return pointer

    def discard(self) -> None:
        self._handle.close()
