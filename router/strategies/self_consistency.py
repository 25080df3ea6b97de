"""``self_consistency``: sample in waves from one prefill, extract final answers, majority vote.

Adaptive stopping (option ``stop_rule``):
- ``beta`` (default) — the Adaptive-Consistency rule: after each wave, with the two largest vote
  counts v1 >= v2, stop when P(Beta(v1 + 1, v2 + 1) > 1/2) >= ``confidence`` (default 0.95).
  Questions whose samples agree stop after the first wave or two; contested ones use the budget.
- ``esc`` — the Early-Stopping Self-Consistency window rule (Li et al., 2024): stop after a wave
  whose samples all gave one answer (an abstention breaks it). The wave is the window; there is
  no confidence to set.
- ``none`` — always draw ``plan.samples`` (SC@k).
Waves hold ``wave`` samples (default 4): smaller waves stop sooner, larger ones batch better.
``bench/strategies.py`` replays every rule over one pool of samples (its "stopping rules" table).
Ties go to the answer reached first. Abstentions cast no vote; with no votes at all the answer is
the most likely sample's text (self-likelihood) and ``answer`` stays empty.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from types import SimpleNamespace

from router.domain import Candidate, Outcome, Plan, Query
from router.strategies import options as opt
from router.strategies.base import Strategy, StrategyContext
from router.strategies.sampling import WaveSampler, beta_sure, tally

STOP_RULES = ("beta", "esc", "none")
StopTest = Callable[[Sequence[str]], bool]


def stop_test(rule: str, wave: int, confidence: float) -> StopTest:
    """The adaptive-stopping test of ``rule`` (one of :data:`STOP_RULES`): given every answer drawn
    so far, in draw order, with equal answers spelled alike and ``""`` for an abstention, is it
    time to stop? ``confidence`` is the Beta rule's; ``wave`` is ESC's window.
    """
    if rule == "beta":
        return lambda answers: beta_sure(Counter(a for a in answers if a), confidence)
    if rule == "esc":
        return lambda answers: len(answers) >= wave and bool(answers[-1]) and len(set(answers[-wave:])) == 1
    if rule == "none":
        return lambda answers: False
    raise ValueError(f"unknown stop rule {rule!r}; one of {', '.join(STOP_RULES)}")


class SelfConsistency(Strategy):
    name = "self_consistency"
    option_checks = {"wave": opt.integer(1), "stop_rule": opt.one_of(STOP_RULES),
                     "confidence": opt.number(0.0, 1.0), "answer_kind": opt.answer_kind}

    def run(self, query: Query, plan: Plan, ctx: StrategyContext) -> Outcome:
        opts = plan.options
        wave = max(1, int(opts.get("wave", 4)))
        rule = str(opts.get("stop_rule", "beta"))
        confidence = float(opts.get("confidence", 0.95))
        sampler = WaveSampler(ctx, query, plan.sampling, answer_kind=str(opts.get("answer_kind", "auto")))
        return vote_in_waves(sampler, plan, wave, stop_test(rule, wave, confidence))


def vote_in_waves(sampler: WaveSampler, plan: Plan, wave: int, stop: StopTest) -> Outcome:
    """Draw up to ``plan.samples`` in waves, stopping early once ``stop`` holds after a wave, and
    return the majority answer.
    """
    def enough() -> bool:
        tally(sampler.candidates)  # merges equal answers under one spelling, as ``stop`` expects
        return stop([c.answer for c in sampler.candidates])

    sure = sampler.draw_waves(plan.samples, wave, enough)
    votes = tally(sampler.candidates)
    return sampler.outcome(majority(sampler.candidates, votes), votes, hit_cap=not sure, capped=plan.capped_by_budget)


def replayed_stop(answers: Sequence[str], wave: int, stop: StopTest) -> int:
    """How many of ``answers`` (in draw order) :func:`vote_in_waves` would draw in waves of ``wave``
    before ``stop`` holds, or all of them: a stopping rule replayed over a pool drawn in advance."""
    drawn = [SimpleNamespace(answer=a) for a in answers]  # what tally() reads and merges
    k = 0
    while k < len(drawn):
        k = min(k + wave, len(drawn))
        tally(drawn[:k])
        if stop([d.answer for d in drawn[:k]]):
            break
    return k


def majority(candidates: Sequence[Candidate], votes: dict[str, int]) -> Candidate | None:
    """The first candidate carrying the most-voted answer; the most likely one if nobody voted."""
    if not candidates:
        return None
    if votes:
        best = max(votes, key=lambda a: votes[a])  # max keeps the first of equals
        return next(c for c in candidates if c.answer == best)
    return max(candidates, key=lambda c: c.completion.mean_logprob)
