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

from router.domain import Outcome, Plan, Query
from router.strategies.base import Strategy, StrategyContext
from router.strategies.sampling import WaveSampler, beta_stop_probability, tally


class SelfConsistency(Strategy):
    name = "self_consistency"

    def run(self, query: Query, plan: Plan, ctx: StrategyContext) -> Outcome:
        opts = plan.options
        wave = max(1, int(opts.get("wave", 4)))
        rule = str(opts.get("stop_rule", "beta"))
        confidence = float(opts.get("confidence", 0.95))
        sampler = WaveSampler(ctx, query, plan.sampling, answer_kind=str(opts.get("answer_kind", "auto")))
        votes: dict[str, int] = {}
        sure = False
        while sampler.usage.samples < plan.samples and not sampler.stopped:
            if not sampler.draw(min(wave, plan.samples - sampler.usage.samples)):
                break
            votes = tally(sampler.candidates)
            if rule == "beta" and votes:
                counts = sorted(votes.values(), reverse=True) + [0]
                sure = beta_stop_probability(counts[0], counts[1]) >= confidence
                if sure:
                    break
        return sampler.outcome(majority(sampler, votes), votes, hit_cap=not sure, capped=plan.capped_by_budget)


def majority(sampler: WaveSampler, votes: dict[str, int]):  # noqa: ANN201
    """The first candidate carrying the most-voted answer; the most likely one if nobody voted."""
    if not sampler.candidates:
        return None
    if votes:
        best = max(votes, key=lambda a: votes[a])  # max keeps the first of equals
        return next(c for c in sampler.candidates if c.answer == best)
    return max(sampler.candidates, key=lambda c: c.completion.mean_logprob)
