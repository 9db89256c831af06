"""The host resources one instance holds: every resource the guest sees is a ``rep`` (an
int) naming a Python object here. Reps are unique per instance, whatever the resource type.

An item may hold the resource it was made from open (a pollable its stream or socket, a file
stream its descriptor): a resource the guest drops while something holds it is closed when the
last holder goes, so no handle resolves to a closed resource.
"""

from __future__ import annotations

from typing import Any, TypeVar

_T = TypeVar("_T")


class ResourceError(Exception):
    """The guest named a resource it does not hold, or one of another type."""


def _close(item: object) -> None:
    close = getattr(item, "close", None)
    if close is not None:
        close()


class Table:
    def __init__(self) -> None:
        self._items: dict[int, Any] = {}
        self._next = 1
        self._holds: dict[int, object] = {}  # rep -> what its item holds open
        self._holders: dict[int, int] = {}  # id(held) -> how many items hold it
        self._closing: dict[int, object] = {}  # id(held) -> a held resource the guest dropped

    def push(self, item: object, holds: object | None = None) -> int:
        """A new rep for ``item``, which holds ``holds`` (if given) open as long as it lives."""
        rep = self._next
        self._next += 1
        self._items[rep] = item
        if holds is not None:
            self._holds[rep] = holds
            self._holders[id(holds)] = self._holders.get(id(holds), 0) + 1
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
        self._let_go(rep)
        return item

    def drop(self, rep: int) -> None:
        """The guest dropped its handle: forget the item and close it if it has anything to
        close, now or, while something holds it, when the last holder goes."""
        if rep not in self._items:
            return
        item = self._items.pop(rep)
        self._let_go(rep)
        if id(item) in self._holders:
            self._closing[id(item)] = item
        else:
            _close(item)

    def close(self) -> None:
        for rep in list(self._items):
            self.drop(rep)

    def items(self) -> list[tuple[int, Any]]:
        """Every rep held now, with its item (for checks that walk the whole table)."""
        return list(self._items.items())

    def __len__(self) -> int:
        return len(self._items)

    def _let_go(self, rep: int) -> None:
        """``rep``'s item is gone: what it held is held by one item fewer."""
        held = self._holds.pop(rep, None)
        if held is None:
            return
        left = self._holders.pop(id(held)) - 1
        if left:
            self._holders[id(held)] = left
        elif id(held) in self._closing:
            _close(self._closing.pop(id(held)))
