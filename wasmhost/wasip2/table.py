"""The host resources one instance holds: every resource the guest sees is a ``rep`` (an
int) naming a Python object here. Reps are unique per instance, whatever the resource type."""

from __future__ import annotations

from typing import Any, TypeVar

_T = TypeVar("_T")


class ResourceError(Exception):
    """The guest named a resource it does not hold, or one of another type."""


class Table:
    def __init__(self) -> None:
        self._items: dict[int, Any] = {}
        self._next = 1

    def push(self, item: object) -> int:
        rep = self._next
        self._next += 1
        self._items[rep] = item
        return rep

    def get(self, rep: int, kind: type[_T]) -> _T:
        item = self._items.get(rep)
        if not isinstance(item, kind):
            raise ResourceError(f"resource {rep} is not a {kind.__name__}")
        return item

    def take(self, rep: int, kind: type[_T]) -> _T:
        """Remove an owned resource the guest handed to the host."""
        item = self.get(rep, kind)
        del self._items[rep]
        return item

    def drop(self, rep: int) -> None:
        """The guest dropped its handle: forget the item and close it if it has anything to close."""
        item = self._items.pop(rep, None)
        close = getattr(item, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        for rep in list(self._items):
            self.drop(rep)

    def __len__(self) -> int:
        return len(self._items)
