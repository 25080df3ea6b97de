"""Sequence state: a batch of rows that share one KV cache tensor per layer.

Rows may hold different numbers of real tokens. Each slot of the cache has a mask bit; padding
slots are masked out, and position ids count real tokens only, so a row's output does not depend
on the padding beside it. That is what lets one batch carry forks of a tree search whose steps
have different lengths.

Invariant: every token of ``tokens[r]`` is in the cache except the trailing ``pending[r]``;
``logits[r]`` predicts the token after ``tokens[r]`` whenever ``pending[r]`` is empty. When an
accelerator selects the tokens (:mod:`router.engine.device_select`), a decode step's logits stay on
the device (``device_logits``) and come to the host only if something reads ``logits``. A row the
step did not feed (finished, or left out of a ragged extend) keeps its earlier logits on the host
(``held_logits``), since the pass wrote padding into its row of ``device_logits``. A greedy decode
step on the CPU may leave greedy logits instead (``greedy``, :mod:`router.engine.greedy_head`),
which become float32 logits if anything but the greedy pick reads them.

Two cache layouts, by the decoder's build (``Manifest.kv_cache``): ``concat`` caches are exactly
``slots`` long and each forward pass returns new ones; ``inplace`` caches are host ``buffers`` of
a larger ``capacity`` that the decoder writes in place, so the state grows them (by reallocation,
at least doubling) before a pass would overflow them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from router.engine.greedy_head import GreedyLogits


@dataclass
class SequenceState:
    kv: list[ort.OrtValue]
    mask: np.ndarray  # [rows, slots] int64
    lengths: np.ndarray  # [rows] real tokens in the cache = next position id
    tokens: list[list[int]]
    pending: list[list[int]]
    host_logits: np.ndarray | None  # [rows, vocab] float32; None while only ``device_logits`` hold them
    device: str = "cpu"
    _keepalive: list[Any] = field(default_factory=list, repr=False)
    buffers: list[np.ndarray] | None = field(default=None, repr=False)  # inplace layout: what ``kv`` wraps
    device_logits: ort.OrtValue | None = field(default=None, repr=False)  # [rows, 1, vocab], the last pass's
    held_logits: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # rows it did not feed
    greedy: GreedyLogits | None = field(default=None, repr=False)  # a greedy step's logits

    @property
    def logits(self) -> np.ndarray:
        """[rows, vocab] float32 on the host (copied from the device on first read, if they are
        there; from the float32 head if a greedy step left greedy logits)."""
        if self.host_logits is None:
            if self.greedy is not None:
                self.host_logits, self.greedy = self.greedy.exact(), None
                return self.host_logits
            if self.device_logits is None:
                raise RuntimeError("sequence state holds no logits")
            host = np.array(self.device_logits.numpy()[:, -1])
            for row, held in self.held_logits.items():
                host[row] = held
            self.host_logits = host
        return self.host_logits

    @logits.setter
    def logits(self, value: np.ndarray) -> None:
        self.host_logits, self.device_logits, self.held_logits, self.greedy = value, None, {}, None

    def keep_greedy_logits(self, value: GreedyLogits) -> None:
        """A greedy decode step's logits for every row (:mod:`router.engine.greedy_head`)."""
        self.host_logits, self.device_logits, self.held_logits, self.greedy = None, None, {}, value

    def keep_logits_on_device(self, value: ort.OrtValue, fed: np.ndarray) -> None:
        """A decode pass's logits, left where the decoder wrote them; the rows it did not feed
        (not in ``fed``) keep the logits they had, on the host."""
        if len(fed) == self.rows and not self.held_logits:  # every decode step but a ragged batch's last
            self.host_logits, self.device_logits = None, value
            return
        unfed = set(range(self.rows)) - {int(r) for r in fed}
        new_holds = unfed - self.held_logits.keys()
        if new_holds:  # a row just left out: its logits from before this pass (copied once)
            before = self.logits
            self.held_logits.update({r: before[r].copy() for r in new_holds})
        self.held_logits = {r: v for r, v in self.held_logits.items() if r in unfed}
        self.host_logits, self.device_logits = None, value

    def on_device(self, rows: list[int]) -> bool:
        """Whether the logits of ``rows`` are on the device (and only there)."""
        return self.device_logits is not None and not self.held_logits.keys() & set(rows)

    @property
    def rows(self) -> int:
        return len(self.tokens)

    @property
    def slots(self) -> int:
        return int(self.mask.shape[1])

    @property
    def capacity(self) -> int:
        """Slots the cache holds before it must grow (``slots`` for the concat layout)."""
        return int(self.buffers[0].shape[2]) if self.buffers else self.slots

    def reserve(self, slots: int) -> None:
        """Make room for ``slots`` slots in an inplace cache (a no-op when there is room)."""
        if self.buffers is None or slots <= self.capacity:
            return
        self._set_buffers([_resized(b, self.slots, inplace_capacity(slots, self.capacity)) for b in self.buffers])

    def _set_buffers(self, buffers: list[np.ndarray]) -> None:
        self.buffers = buffers
        self.kv = [ort.OrtValue.ortvalue_from_numpy(b, "cpu", 0) for b in buffers]

    def select(self, rows: list[int]) -> SequenceState:
        """A new state made of the given rows (repeats allowed): fork, pick, or compact.

        The cache is copied (through host memory on CUDA: forks are rare next to decode steps).
        Slots that are padding in every chosen row are dropped on the way.
        """
        idx = np.asarray(rows, dtype=np.int64)
        mask = self.mask[idx]
        live = mask.any(axis=0)
        keep = None if live.all() else np.flatnonzero(live)
        if self.buffers is not None:
            return self._select_inplace(rows, idx, mask, keep)
        kv, keepalive = [], []
        for value in self.kv:
            arr = value.numpy()[idx]
            if keep is not None:
                arr = arr[:, :, keep, :]
            arr = np.ascontiguousarray(arr)
            keepalive.append(arr)
            kv.append(ort.OrtValue.ortvalue_from_numpy(arr, self.device, 0))
        if keep is not None:
            mask = mask[:, keep]
        return SequenceState(
            kv=kv,
            mask=np.ascontiguousarray(mask),
            lengths=self.lengths[idx].copy(),
            tokens=[list(self.tokens[r]) for r in rows],
            pending=[list(self.pending[r]) for r in rows],
            host_logits=self.logits[idx].copy(),
            device=self.device,
            _keepalive=keepalive if self.device == "cpu" else [],
        )

    def _select_inplace(
        self, rows: list[int], idx: np.ndarray, mask: np.ndarray, keep: np.ndarray | None
    ) -> SequenceState:
        """:meth:`select` for the inplace layout: the chosen rows' slots in use, at this capacity."""
        if keep is not None:
            mask = mask[:, keep]
        buffers = []
        for buf in self.buffers or ():
            part = buf[idx][:, :, keep] if keep is not None else buf[idx, :, : self.slots]
            buffers.append(_resized(part, part.shape[2], self.capacity))
        state = SequenceState(
            kv=[], mask=np.ascontiguousarray(mask), lengths=self.lengths[idx].copy(),
            tokens=[list(self.tokens[r]) for r in rows], pending=[list(self.pending[r]) for r in rows],
            host_logits=self.logits[idx].copy(), device=self.device,
        )
        state._set_buffers(buffers)
        return state

    def fork(self, k: int) -> SequenceState:
        """Each row repeated ``k`` times, in order: rows ``[0]*k + [1]*k + ...``."""
        return self.select([r for r in range(self.rows) for _ in range(k)])


def inplace_capacity(slots: int, current: int = 0) -> int:
    """Capacity for ``slots`` slots: at least double the current one (so growth copies O(log n)
    times), with room to decode a while, in whole blocks of 64."""
    want = max(slots + 64, 2 * current)
    return -(-want // 64) * 64


def _resized(cache: np.ndarray, used: int, capacity: int) -> np.ndarray:
    """A ``[rows, heads, capacity, dim]`` buffer holding the first ``used`` slots of ``cache``
    (zeros after them: never read, but no stale NaN can reach a masked score either)."""
    out = np.zeros((*cache.shape[:2], capacity, cache.shape[3]), dtype=cache.dtype)
    out[:, :, :used] = cache[:, :, :used]
    return out
