"""Compute slots: bounded admission, all or nothing, never a queue.

A request for ``n`` samples takes ``n`` slots at once or none; when they are not free it is
refused at once (the transport answers RESOURCE_EXHAUSTED with a retry hint) rather than waiting
in an unbounded queue. Slots are released when the work really stops, not when the caller gives
up, so capacity always matches what the model is doing.
"""

from __future__ import annotations

import threading

from router.errors import CapacityError, OverloadedError


class ComputeSlots:
    def __init__(self, capacity: int, retry_after_s: float = 1.0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self, n: int) -> None:
        """Take ``n`` slots or raise :class:`OverloadedError` (busy now) or :class:`CapacityError` (never)."""
        if n > self.capacity:
            raise CapacityError(
                f"request needs {n} compute slots and this server has {self.capacity} in all, so retrying will not "
                f"help: cap it with hints.budget.max_samples <= {self.capacity}, or raise server.compute_slots"
            )
        with self._lock:
            if self._in_use + n > self.capacity:
                free = self.capacity - self._in_use
                raise OverloadedError(
                    f"server busy: request needs {n} compute slots, {free} of {self.capacity} free; "
                    f"retry in {self.retry_after_s:g} s",
                    self.retry_after_s,
                )
            self._in_use += n

    def release(self, n: int) -> None:
        with self._lock:
            self._in_use -= n
            assert self._in_use >= 0, "released more slots than acquired"
