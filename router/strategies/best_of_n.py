"""``best_of_n``: n samples ranked by a verifier, or weighted voting over their answers.

Options: ``verifier`` (default ``self_likelihood``), ``selection``: ``rank`` (default: the
top-scored candidate) or ``weighted`` (sum of verifier scores per distinct answer; the winning
answer's top-scored candidate is returned). With ``rank``, candidates with a parsable answer are
preferred over abstentions. Samples are drawn in one batch (``wave`` option splits them).
"""

from __future__ import annotations

from router.domain import Candidate, Outcome, Plan, Query
from router.strategies import options as opt
from router.strategies.base import Strategy, StrategyContext
from router.strategies.sampling import WaveSampler, tally
from router.verifiers import ScoredItem, get_verifier


class BestOfN(Strategy):
    name = "best_of_n"
    option_checks = {"verifier": opt.verifier, "selection": opt.one_of(("rank", "weighted")),
                     "wave": opt.integer(1), "answer_kind": opt.answer_kind}

    def run(self, query: Query, plan: Plan, ctx: StrategyContext) -> Outcome:
        opts = plan.options
        verifier = get_verifier(str(opts.get("verifier", "self_likelihood")))
        selection = str(opts.get("selection", "rank"))
        wave = max(1, int(opts.get("wave", plan.samples)))
        sampler = WaveSampler(ctx, query, plan.sampling, answer_kind=str(opts.get("answer_kind", "auto")))
        sampler.draw_waves(plan.samples, wave)
        votes = tally(sampler.candidates)
        cands = sampler.candidates
        if not cands:
            return sampler.outcome(None, votes, hit_cap=True, capped=plan.capped_by_budget)
        question = query.question
        items = [ScoredItem(question, c.completion, c.answer, votes, len(cands)) for c in cands]
        for cand, score in zip(cands, verifier.score(items, ctx.engine), strict=True):
            cand.scores[verifier.name] = score
        return sampler.outcome(select(cands, verifier.name, selection), votes, hit_cap=True,
                               capped=plan.capped_by_budget)


def select(cands: list[Candidate], scorer: str, selection: str) -> Candidate:
    if selection == "weighted":
        weight: dict[str, float] = {}
        for c in cands:
            if c.answer:
                weight[c.answer] = weight.get(c.answer, 0.0) + c.scores[scorer]
        if weight:
            best = max(weight, key=lambda a: weight[a])
            return max((c for c in cands if c.answer == best), key=lambda c: c.scores[scorer])
    answered = [c for c in cands if c.answer] or cands
    return max(answered, key=lambda c: c.scores[scorer])
