"""A dict bounded by the bytes of what it holds, not by its number of entries.

The finished-request caches (the job store's ``_final`` rows, the status fast path's rendered
answers) used to hold up to N entries whatever their size: a few requests with multi-megabyte
inputs made an entry-count bound worth hundreds of megabytes. Here each entry carries its size
(the caller's estimate) and the oldest entries go first once the total passes ``max_bytes``.
An entry larger than ``max_bytes / 8`` is not kept at all: one huge row must not evict everything.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict


class ByteBoundedCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict = OrderedDict()  # key -> (value, size)
        self._lock = threading.Lock()  # written from the thread pool

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def get(self, key, default=None):
        hit = self._items.get(key)
        return default if hit is None else hit[0]

    def put(self, key, value, size: int) -> bool:
        """Keep ``value`` (``size`` bytes); False when it is too large to be worth keeping."""
        size = max(int(size), 1)
        if size > self.max_bytes // 8:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped
        return True

    def keys(self) -> list:
        with self._lock:
            return list(self._items)

    def values(self) -> list:
        with self._lock:
            return [value for value, _ in self._items.values()]

    def pop(self, key, default=None):
        with self._lock:
            hit = self._items.pop(key, None)
            if hit is None:
                return default
            self.bytes -= hit[1]
            return hit[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


def json_size(*values) -> int:
    """Bytes of ``values`` as compact JSON: the estimate of what a decoded row holds in memory
    (Python objects take more; the bound is on the order of magnitude, which is what matters)."""
    total = 0
    for value in values:
        if value is not None:
            total += len(json.dumps(value, separators=(",", ":"), default=str))
    return total
