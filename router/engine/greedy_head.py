"""Greedy logits from the int8 head: the float32 head's argmax for a fraction of its reads.

A batch-1 decode step on the CPU reads every weight once, and SmolLM2's LM head is 113 of its
538 MB. A greedy step needs only the argmax and the chosen token's log-probability. So the
in-place decoder graph (``router/modelbuild/graph.py``, ``_int8_head``) has an ``exact_logits``
input: true, the float32 head; false, *greedy logits*: an int8 copy of the head (a quarter of the
bytes) with every token that could still be the argmax, and every likely one, recomputed in
float32 inside the graph. Their argmax is the float32 head's; their log-softmax at it differs from
the float32 head's only through the int8 values of unlikely tokens.

Greedy logits are good for a greedy pick and nothing else, so a sequence state that holds them
(:class:`GreedyLogits`) turns them into float32 logits, by running the same step again with the
float32 head, if anything else reads them (sampling from that state, a fork).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The in-place graph's input that chooses the head, and its output counting the logits a greedy
# step recomputed in float32.
EXACT_LOGITS = "exact_logits"
HEAD_CANDIDATES = "head_candidates"


@dataclass
class GreedyLogits:
    """A decode step's greedy logits ``[rows, vocab]`` and how to get its float32 logits instead
    (``exact()``: the same forward pass with the float32 head; the in-place cache takes the same
    slots again, so running it twice changes nothing)."""

    logits: np.ndarray
    exact: Callable[[], np.ndarray]
