"""Sequence state: a batch of rows that share one KV cache tensor per layer.

Rows may hold different numbers of real tokens. Each slot of the cache has a mask bit; padding
slots are masked out, and position ids count real tokens only, so a row's output does not depend
on the padding beside it. That is what lets one batch carry forks of a tree search whose steps
have different lengths.

Invariant: every token of ``tokens[r]`` is in the cache except the trailing ``pending[r]``;
``logits[r]`` predicts the token after ``tokens[r]`` whenever ``pending[r]`` is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort


@dataclass
class SequenceState:
    kv: list[ort.OrtValue]
    mask: np.ndarray  # [rows, slots] int64
    lengths: np.ndarray  # [rows] real tokens in the cache = next position id
    tokens: list[list[int]]
    pending: list[list[int]]
    logits: np.ndarray  # [rows, vocab] float32
    device: str = "cpu"
    _keepalive: list[Any] = field(default_factory=list, repr=False)

    @property
    def rows(self) -> int:
        return len(self.tokens)

    @property
    def slots(self) -> int:
        return int(self.mask.shape[1])

    def select(self, rows: list[int]) -> SequenceState:
        """A new state made of the given rows (repeats allowed): fork, pick, or compact.

        The cache is copied (through host memory on CUDA: forks are rare next to decode steps).
        Slots that are padding in every chosen row are dropped on the way.
        """
        idx = np.asarray(rows, dtype=np.int64)
        mask = self.mask[idx]
        live = mask.any(axis=0)
        keep = None if live.all() else np.flatnonzero(live)
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
            logits=self.logits[idx].copy(),
            device=self.device,
            _keepalive=keepalive if self.device == "cpu" else [],
        )

    def fork(self, k: int) -> SequenceState:
        """Each row repeated ``k`` times, in order: rows ``[0]*k + [1]*k + ...``."""
        return self.select([r for r in range(self.rows) for _ in range(k)])
