"""A least-recently-used cache bounded by the bytes it holds, not by its number of entries.

Used for decoded images: a count limit alone lets a few large images fill the server's memory.
Values are numpy arrays (their ``nbytes`` is counted) or anything with a ``len`` in bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable


def size_in_bytes(value: Any) -> int:
    """The bytes a cached value holds: ``nbytes`` for arrays, ``len`` for bytes."""
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    raise TypeError(f"Cannot size a {type(value).__name__}; expected a numpy array or bytes.")


class ByteBoundedCache:
    """Thread-safe LRU cache that never holds more than ``max_bytes``.

    Args:
        max_bytes: the bound. A value larger than it is returned by the caller but not kept.
    """

    def __init__(self, max_bytes: int):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer; received {max_bytes!r}.")
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """The bytes held now (always ``<= max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value for ``key`` (now the most recently used), else ``default``."""
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: Any) -> bool:
        """Keep ``value``, evicting the least recently used; False when it alone is too big."""
        size = size_in_bytes(value)
        with self._lock:
            self._discard(key)
            if size > self.max_bytes:
                return False
            while self._bytes + size > self.max_bytes:
                self._discard(next(iter(self._items)))
            self._items[key] = (value, size)
            self._bytes += size
            return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _discard(self, key: Hashable) -> None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]
