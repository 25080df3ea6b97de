"""``self_consistency``: sample in waves from one prefill, extract final answers, majority vote.

Adaptive stopping (option ``stop_rule``):
- ``beta`` (default) — the Adaptive-Consistency rule: after each wave, with the two largest vote
  counts v1 >= v2, stop when P(Beta(v1 + 1, v2 + 1) > 1/2) >= ``confidence`` (default 0.95).
  Questions whose samples agree stop after the first wave or two; contested ones use the budget.
- ``none`` — always draw ``plan.samples`` (SC@k).
Waves hold ``wave`` samples (default 4): smaller waves stop sooner, larger ones batch better.
Ties go to the answer reached first. Abstentions cast no vote; with no votes at all the answer is
the most likely sample's text (self-likelihood) and ``answer`` stays empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

from router.domain import Candidate, Outcome, Plan, Query
from router.strategies import options as opt
from router.strategies.base import Strategy, StrategyContext
from router.strategies.sampling import WaveSampler, beta_sure, tally


class SelfConsistency(Strategy):
    name = "self_consistency"
    option_checks = {"wave": opt.integer(1), "stop_rule": opt.one_of(("beta", "none")),
                     "confidence": opt.number(0.0, 1.0), "answer_kind": opt.answer_kind}

    def run(self, query: Query, plan: Plan, ctx: StrategyContext) -> Outcome:
        opts = plan.options
        wave = max(1, int(opts.get("wave", 4)))
        rule = str(opts.get("stop_rule", "beta"))
        confidence = float(opts.get("confidence", 0.95))
        sampler = WaveSampler(ctx, query, plan.sampling, answer_kind=str(opts.get("answer_kind", "auto")))
        return vote_in_waves(sampler, plan, wave, confidence if rule == "beta" else None)


def vote_in_waves(sampler: WaveSampler, plan: Plan, wave: int, confidence: float | None) -> Outcome:
    """Draw up to ``plan.samples`` in waves, stopping early once the Beta rule is sure at
    ``confidence`` (never, when it is None), and return the majority answer.
    """
    sure = sampler.draw_waves(
        plan.samples, wave, lambda: confidence is not None and beta_sure(tally(sampler.candidates), confidence)
    )
    votes = tally(sampler.candidates)
    return sampler.outcome(majority(sampler.candidates, votes), votes, hit_cap=not sure, capped=plan.capped_by_budget)


def replayed_stop(answers: Sequence[str], wave: int, confidence: float) -> int:
    """How many of ``answers`` (in draw order) :func:`vote_in_waves` would draw before the Beta rule
    is sure, or all of them: the stopping rule replayed over a pool of samples drawn in advance."""
    drawn = [SimpleNamespace(answer=a) for a in answers]  # what tally() reads
    k = 0
    while k < len(drawn):
        k = min(k + wave, len(drawn))
        if beta_sure(tally(drawn[:k]), confidence):
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
