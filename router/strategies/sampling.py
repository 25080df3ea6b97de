"""Shared machinery of the multi-sample strategies: draw samples in waves from one prefill,
extract their answers, and count votes.

Waves: the prompt is prefilled once; each wave forks that state into k rows and decodes them as
one batch. Wave ``w`` draws with a seed derived from ``(seed, w)``, so waves differ from each
other and a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from router.domain import Candidate, Flags, Outcome, Query, Usage
from router.engine import FinishReason, SamplingParams, SequenceState
from router.strategies.base import StrategyContext
from router.verifiers.answers import answers_equal, extract_answer


def wave_params(params: SamplingParams, wave: int) -> SamplingParams:
    if params.seed is None:
        return params
    return replace(params, seed=(params.seed * 1_000_003 + wave) % 2**63)


@dataclass
class WaveSampler:
    """Samples a prompt in waves that share one prefill; keeps the usage tally."""

    ctx: StrategyContext
    query: Query
    params: SamplingParams
    answer_kind: str = "auto"
    usage: Usage = field(default_factory=Usage)
    flags: Flags = field(default_factory=Flags)
    candidates: list[Candidate] = field(default_factory=list)
    _prompt: SequenceState | None = None
    _waves: int = 0

    @property
    def stopped(self) -> bool:
        """Cancelled or out of time: no further wave should start."""
        return self.ctx.cancel.cancelled or self.flags.truncated_by_deadline

    def draw(self, k: int) -> list[Candidate]:
        """``k`` more samples (one batched decode); fewer or none once cancelled or past the deadline."""
        engine = self.ctx.engine
        if self._prompt is None:
            ids = engine.tokenizer.encode_prompt(self.query.prompt)
            self._prompt = engine.prefill(ids)
            self.usage.prompt_tokens = len(ids)
        if self.stopped or k <= 0:
            return []
        rows = self._prompt.fork(k)
        comps = engine.decode(rows, wave_params(self.params, self._waves), cancel=self.ctx.cancel,
                              deadline=self.ctx.deadline, compact=True)
        self._waves += 1
        self.usage.model_calls += 1
        new = []
        for comp in comps:
            if comp.finish_reason is FinishReason.DEADLINE:
                self.flags.truncated_by_deadline = True
            if comp.finish_reason in (FinishReason.DEADLINE, FinishReason.CANCELLED) and not comp.token_ids:
                continue  # never started: not a sample
            comp = replace(comp, index=len(self.candidates))
            cand = Candidate(completion=comp, answer=extract_answer(comp.text, self.answer_kind) or "")
            self.candidates.append(cand)
            self.usage.completion_tokens += comp.completion_tokens
            self.usage.samples += 1
            new.append(cand)
            if self.ctx.on_sample is not None:
                self.ctx.on_sample(cand)
        return new

    def draw_waves(self, total: int, wave: int, enough: Callable[[], bool] = lambda: False) -> bool:
        """Draw waves of ``wave`` samples until ``total`` are drawn, the run is stopped, or
        ``enough()`` holds after a wave. Returns True only in the last case.
        """
        while self.usage.samples < total and not self.stopped:
            if not self.draw(min(wave, total - self.usage.samples)):
                return False
            if enough():
                return True
        return False

    def continued(self, params: SamplingParams) -> WaveSampler:
        """A sampler with other parameters that shares this one's prefill, samples, usage and flags."""
        return replace(self, params=params, _waves=0)

    def outcome(self, chosen: Candidate | None, votes: dict[str, int], *, hit_cap: bool, capped: bool) -> Outcome:
        """The strategy's result. ``hit_cap``: it used every sample the plan allowed (rather than
        stopping because it was sure); ``capped``: the caller's budget had lowered that allowance
        or the token limit. Both together, or a sample cut at a budget-lowered token limit, mark
        the answer truncated by budget.
        """
        if chosen is not None:
            chosen.chosen = True
        cut = any(c.completion.finish_reason is FinishReason.LENGTH for c in self.candidates)
        self.flags.truncated_by_budget = capped and (hit_cap or cut)
        return Outcome(
            text=chosen.completion.text if chosen else "",
            answer=chosen.answer if chosen else "",
            candidates=self.candidates,
            votes=votes,
            usage=self.usage,
            flags=self.flags,
        )


def tally(candidates: Sequence[Candidate]) -> dict[str, int]:
    """Votes per distinct answer, equal answers (0.5 and 1/2) merged under the first spelling seen.

    Abstentions (no parsable answer) cast no vote.
    """
    votes: dict[str, int] = {}
    for cand in candidates:
        if not cand.answer:
            continue
        key = next((k for k in votes if k == cand.answer or answers_equal(k, cand.answer)), cand.answer)
        cand.answer = key
        votes[key] = votes.get(key, 0) + 1
    return votes


def beta_sure(votes: dict[str, int], confidence: float) -> bool:
    """The Beta stopping rule on a vote count: is the leading answer ahead with ``confidence``?"""
    if not votes:
        return False
    counts = sorted(votes.values(), reverse=True) + [0]
    return beta_stop_probability(counts[0], counts[1]) >= confidence


def beta_stop_probability(top: int, second: int) -> float:
    """P(p_top > p_second) under a uniform prior, i.e. P(Beta(top + 1, second + 1) > 1/2).

    The Adaptive-Consistency stopping rule (Aggarwal et al., 2023): stop sampling once this
    exceeds a threshold. For integer counts it is a binomial tail, computed exactly:
    I_x(a, b) = P(Binomial(a + b - 1, x) >= a), so P(X > 1/2) = P(Binomial(n, 1/2) <= top) with
    n = top + second + 1.
    """
    from math import comb

    n = top + second + 1
    return sum(comb(n, j) for j in range(top + 1)) / 2**n
