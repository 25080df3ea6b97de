"""Plain data the engine takes and returns: sampling parameters, completions, cancel tokens."""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from router.errors import InvalidArgumentError

ChatMessages = Sequence[Mapping[str, str]]
Prompt = str | ChatMessages

# Below this temperature sampling is greedy. The limit T -> 0 of softmax(logits / T) is the argmax;
# dividing by a T near float32's smallest values overflows to inf, and 0 * inf is NaN. At 1e-5 a
# logit gap of 1e-4 already weighs e^-10, so below it only exact ties would still be sampled.
MIN_TEMPERATURE = 1e-5


class FinishReason(enum.StrEnum):
    """Why a completion stopped."""

    EOS = "eos"
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    DEADLINE = "deadline"


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``temperature < MIN_TEMPERATURE`` (1e-5; 0 included) is greedy;
    ``top_k == 0`` and ``top_p == 1`` are off.

    ``stop`` strings end a completion; its text is cut before the stop string. ``seed`` makes
    sampling reproducible: row ``i`` of a call draws from its own generator seeded by
    ``(seed, i)``, so a row's output does not depend on how many rows ran beside it.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def validate(self, max_new_tokens_limit: int | None = None) -> None:
        """Raise :class:`InvalidArgumentError` naming the first bad field."""
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise InvalidArgumentError("temperature", f"must be a finite number >= 0, got {self.temperature}")
        if not math.isfinite(self.top_p) or not 0 < self.top_p <= 1:
            raise InvalidArgumentError("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidArgumentError("top_k", f"must be >= 0 (0 disables it), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise InvalidArgumentError("max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        if max_new_tokens_limit is not None and self.max_new_tokens > max_new_tokens_limit:
            raise InvalidArgumentError(
                "max_new_tokens", f"must be <= {max_new_tokens_limit}, got {self.max_new_tokens}"
            )
        if any(not s for s in self.stop):
            raise InvalidArgumentError("stop", "stop strings must be non-empty")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise InvalidArgumentError("seed", f"must be in [0, 2**63), got {self.seed}")

    @property
    def greedy(self) -> bool:
        """Whether tokens are the argmax: ``temperature`` is 0 or below :data:`MIN_TEMPERATURE`, the
        limit sampling tends to (top_k and top_p then change nothing; logprobs stay the model's)."""
        return self.temperature < MIN_TEMPERATURE


@dataclass
class Completion:
    """One generated continuation.

    ``token_ids`` are the generated tokens (EOS excluded); ``logprobs[i]`` is the model's log
    probability of ``token_ids[i]`` (log-softmax of the raw logits, independent of temperature),
    which is what self-likelihood verifiers need. ``text`` is cut before any stop string.
    """

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0


@dataclass
class CancelToken:
    """Set from any thread; the decode loop checks it before every step."""

    _event: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
