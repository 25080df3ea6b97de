"""``single``: one pass, greedy unless the plan samples. The cheapest level of every ladder."""

from __future__ import annotations

from router.domain import Candidate, Flags, Outcome, Plan, Query, Usage
from router.engine import FinishReason
from router.strategies.base import Strategy, StrategyContext


class SinglePass(Strategy):
    name = "single"

    def run(self, query: Query, plan: Plan, ctx: StrategyContext) -> Outcome:
        engine = ctx.engine
        streamed: list[int] = []
        sent = [""]

        def on_tokens(accepted: list[tuple[int, int]]) -> None:
            streamed.extend(tok for _, tok in accepted)
            text = engine.tokenizer.decode(streamed)
            if ctx.on_text is not None and len(text) > len(sent[0]) and not text.endswith("\ufffd"):
                ctx.on_text(text[len(sent[0]):], len(streamed))
                sent[0] = text

        [completion] = engine.generate(
            query.prompt, plan.sampling, n=1, cancel=ctx.cancel, deadline=ctx.deadline,
            on_tokens=on_tokens if ctx.on_text is not None else None,
        )
        if ctx.on_text is not None and completion.text != sent[0] and completion.text.startswith(sent[0]):
            ctx.on_text(completion.text[len(sent[0]):], completion.completion_tokens)
        return Outcome(
            text=completion.text,
            answer="",
            candidates=[Candidate(completion=completion, chosen=True)],
            votes={},
            usage=Usage(
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                samples=1,
                model_calls=1,
            ),
            flags=Flags(
                truncated_by_deadline=completion.finish_reason is FinishReason.DEADLINE,
                truncated_by_budget=completion.finish_reason is FinishReason.LENGTH and plan.capped_by_budget,
            ),
        )
