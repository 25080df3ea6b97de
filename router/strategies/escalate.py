"""``escalate``: a cascade. One greedy pass first; if its confidence is below ``threshold``,
sample more and vote, counting the greedy answer as the first vote (nothing generated is wasted).

Options: ``confidence`` — ``self_likelihood`` (default: exp(mean logprob) of the greedy pass) or
``lm_judge``; ``threshold`` (default 0.6); the escalated stage is self-consistency with
``plan.samples`` samples at ``plan.sampling`` (with adaptive stopping, ``stop_rule`` as there).
"""

from __future__ import annotations

from dataclasses import replace

from router.domain import Outcome, Plan, Query
from router.strategies import options as opt
from router.strategies.base import Strategy, StrategyContext
from router.strategies.sampling import WaveSampler, tally
from router.strategies.self_consistency import STOP_RULES, stop_test, vote_in_waves
from router.verifiers import ScoredItem, get_verifier


class Escalate(Strategy):
    name = "escalate"
    option_checks = {"threshold": opt.number(0.0, 1.0), "confidence": opt.verifier, "answer_kind": opt.answer_kind,
                     "wave": opt.integer(1), "stop_rule": opt.one_of(STOP_RULES),
                     "stop_confidence": opt.number(0.0, 1.0)}

    def run(self, query: Query, plan: Plan, ctx: StrategyContext) -> Outcome:
        opts = plan.options
        threshold = float(opts.get("threshold", 0.6))
        scorer = get_verifier(str(opts.get("confidence", "self_likelihood")))
        kind = str(opts.get("answer_kind", "auto"))
        greedy_params = replace(plan.sampling, temperature=0.0)
        first = WaveSampler(ctx, query, greedy_params, answer_kind=kind)
        [cand] = first.draw(1) or [None]
        if cand is None:
            return first.outcome(None, {}, hit_cap=False, capped=plan.capped_by_budget)
        conf = scorer.score([ScoredItem(query.question, cand.completion, cand.answer)], ctx.engine)[0]
        cand.scores[scorer.name] = conf
        if conf >= threshold or first.stopped or plan.samples <= 1:
            return first.outcome(cand, tally(first.candidates), hit_cap=False, capped=plan.capped_by_budget)

        sampler = first.continued(plan.sampling)  # same prefill; the greedy answer is the first vote
        wave = max(1, int(opts.get("wave", 4)))
        stop = stop_test(str(opts.get("stop_rule", "beta")), wave, float(opts.get("stop_confidence", 0.95)))
        return vote_in_waves(sampler, plan, wave, stop)
