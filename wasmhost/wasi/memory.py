"""Bounds-checked access to a guest's linear memory.

Every read or write is checked against the memory's size; a bad guest pointer raises
``WasiError(FAULT)`` and can never touch host memory. The engine keeps linear memory at a
fixed address and memory never shrinks, so an access inside the known size needs no
lookup; only an access past it asks the engine whether the memory grew.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from .abi import IOVEC, MAX_IOVECS, U32, U64, Errno, WasiError


class GuestMemory:
    """A guest memory seen through a locator that reports its current (address, size)."""

    def __init__(self, locate: Callable[[], tuple[int, int]]) -> None:
        self._locate = locate
        self._size = 0
        self._view = memoryview(bytearray())

    @classmethod
    def of_buffer(cls, buffer: bytearray) -> GuestMemory:
        """Memory backed by a Python buffer: for tests and tools, no wasm needed."""
        address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
        return cls(lambda: (address, len(buffer)))

    def _refresh(self) -> None:
        address, size = self._locate()
        if size != self._size:
            self._view = (
                memoryview((ctypes.c_ubyte * size).from_address(address)).cast("B") if size else memoryview(bytearray())
            )
            self._size = size

    def check(self, ptr: int, length: int) -> memoryview:
        """The view, after checking that ``[ptr, ptr+length)`` lies inside memory."""
        if ptr + length > self._size:
            self._refresh()
            if ptr + length > self._size:
                raise WasiError(Errno.FAULT)  # a fresh one: a raised exception keeps its traceback
        return self._view

    def read(self, ptr: int, length: int) -> bytes:
        return bytes(self.check(ptr, length)[ptr : ptr + length])

    def write(self, ptr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        self.check(ptr, n)[ptr : ptr + n] = data

    def u32(self, ptr: int) -> int:
        value: int = U32.unpack_from(self.check(ptr, 4), ptr)[0]
        return value

    def set_u32(self, ptr: int, value: int) -> None:
        U32.pack_into(self.check(ptr, 4), ptr, value)

    def set_u64(self, ptr: int, value: int) -> None:
        U64.pack_into(self.check(ptr, 8), ptr, value)

    def string(self, ptr: int, length: int) -> str:
        """A guest string (path, name): UTF-8, or ``ILSEQ`` when it is not; ``INVAL`` when it
        holds a NUL, which no host call could take."""
        raw = self.read(ptr, length)
        if b"\0" in raw:
            raise WasiError(Errno.INVAL)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WasiError(Errno.ILSEQ) from None

    def iovecs(self, ptr: int, count: int) -> list[memoryview]:
        """The buffers named by an iovec array, as writable views into guest memory."""
        if count > MAX_IOVECS:
            raise WasiError(Errno.INVAL)
        view = self.check(ptr, count * IOVEC.size)
        bufs = []
        for buf, length in IOVEC.iter_unpack(view[ptr : ptr + count * IOVEC.size]):
            bufs.append(self.check(buf, length)[buf : buf + length])
        return bufs
