"""``single``: one pass, greedy unless the plan samples. The cheapest level of every ladder.

Option ``cot`` (default false) appends a chain-of-thought instruction to the last user turn.
"""

from __future__ import annotations

from router.domain import Candidate, Flags, Outcome, Plan, Query, Usage
from router.engine import FinishReason
from router.engine.types import Prompt
from router.strategies import options as opt
from router.strategies.base import Strategy, StrategyContext
from router.verifiers.answers import extract_answer

COT = "\n\nThink step by step, then give the final answer on the last line."


def with_cot(prompt: Prompt) -> Prompt:
    if isinstance(prompt, str):
        return prompt + COT
    messages = [dict(m) for m in prompt]
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    messages[last_user]["content"] += COT
    return messages


class SinglePass(Strategy):
    name = "single"
    option_checks = {"cot": opt.flag, "answer_kind": opt.answer_kind}

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

        prompt = with_cot(query.prompt) if plan.options.get("cot") else query.prompt
        [completion] = engine.generate(
            prompt, plan.sampling, n=1, cancel=ctx.cancel, deadline=ctx.deadline,
            on_tokens=on_tokens if ctx.on_text is not None else None,
        )
        if ctx.on_text is not None and completion.text != sent[0] and completion.text.startswith(sent[0]):
            ctx.on_text(completion.text[len(sent[0]):], completion.completion_tokens)
        return Outcome(
            text=completion.text,
            answer=extract_answer(completion.text, str(plan.options.get("answer_kind", "auto"))) or "",
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
