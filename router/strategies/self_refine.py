"""``self_refine``: draft, critique, revise, for up to ``rounds`` rounds (default 2).

Each round the model critiques its current answer; the loop stops when the critique says it is
correct (it starts with "CORRECT"), or when the ``verifier`` option (e.g. ``lm_judge``) scores
the answer at or above ``threshold`` (default 0.7), or at the budget, deadline or cancellation
(anytime: the latest answer is returned). A revision is written in the same conversation: the
question, the previous answer, and the critique as feedback.

The critique and revision prompts hold the question and the answer, so they outgrow the draft's:
a critique or revision runs only if its prompt and its whole ``max_new_tokens`` fit the model's
context (a revision cut short by the context would replace a whole answer with part of one).
Otherwise refining stops there with the latest answer, flagged ``truncated_by_budget``: the
context is the budget that ran out. The draft is the caller's own prompt and runs as ``single``
would.

Accounting, as the other strategies keep it: ``usage.samples`` counts answers drawn for the
question side by side, which ``plan.samples`` (1 here) bounds and the compute slots reserve, so
it is 1 once a draft exists: the revisions refine that one answer in turn. Every draft and
revision is a candidate, and ``model_calls`` counts every pass (draft, critiques, revisions).
``truncated_by_budget`` is also set, as in ``single``, when a draft or revision stopped at a
``max_new_tokens`` the caller's budget lowered (``plan.capped_by_budget``), or at the context.
"""

from __future__ import annotations

from dataclasses import replace

from router.domain import Candidate, Flags, Outcome, Plan, Query, Usage
from router.engine import Completion, FinishReason, SamplingParams
from router.engine.types import Prompt
from router.strategies import options as opt
from router.strategies.base import Strategy, StrategyContext
from router.verifiers import ScoredItem, get_verifier
from router.verifiers.answers import extract_answer

CRITIQUE = (
    "Question: {question}\n\nProposed answer: {answer}\n\nCheck the proposed answer step by step. "
    "If it is fully correct, reply with the single word CORRECT. Otherwise say briefly what is wrong."
)
REVISE = "Feedback on your answer: {critique}\n\nWrite an improved answer to the original question."


class SelfRefine(Strategy):
    name = "self_refine"
    option_checks = {"rounds": opt.integer(0), "threshold": opt.number(0.0, 1.0), "verifier": opt.verifier,
                     "answer_kind": opt.answer_kind}

    def run(self, query: Query, plan: Plan, ctx: StrategyContext) -> Outcome:
        opts = plan.options
        rounds = max(0, int(opts.get("rounds", 2)))
        threshold = float(opts.get("threshold", 0.7))
        verifier = get_verifier(str(opts["verifier"])) if opts.get("verifier") else None
        kind = str(opts.get("answer_kind", "auto"))
        question = query.question
        usage, flags = Usage(), Flags()
        candidates: list[Candidate] = []

        def call(prompt, params=plan.sampling) -> Completion | None:  # noqa: ANN001
            [c] = ctx.engine.generate(prompt, params, cancel=ctx.cancel, deadline=ctx.deadline)
            usage.model_calls += 1
            usage.completion_tokens += c.completion_tokens
            usage.prompt_tokens = max(usage.prompt_tokens, c.prompt_tokens)
            if c.finish_reason is FinishReason.DEADLINE:
                flags.truncated_by_deadline = True
            if c.finish_reason in (FinishReason.DEADLINE, FinishReason.CANCELLED) and not c.token_ids:
                return None
            return c

        def fits(prompt: Prompt, params: SamplingParams) -> bool:
            room = ctx.engine.context_length - ctx.engine.tokenizer.count_prompt_tokens(prompt)
            if room < params.max_new_tokens:
                flags.truncated_by_budget = True
                return False
            return True

        def keep(c: Completion) -> Candidate:
            cand = Candidate(replace(c, index=len(candidates)), answer=extract_answer(c.text, kind) or "")
            candidates.append(cand)
            usage.samples = 1  # one answer, refined in turn
            if c.finish_reason is FinishReason.LENGTH and (
                plan.capped_by_budget or c.completion_tokens < plan.sampling.max_new_tokens  # cut by the context
            ):
                flags.truncated_by_budget = True
            if ctx.on_sample is not None:
                ctx.on_sample(cand)
            return cand

        draft = call(query.prompt)
        current = keep(draft) if draft else None
        conversation = list(ctx.engine.tokenizer.messages(query.prompt))
        for _ in range(rounds):
            if current is None or ctx.cancel.cancelled or flags.truncated_by_deadline:
                break
            if verifier is not None:
                score = verifier.score([ScoredItem(question, current.completion, current.answer)], ctx.engine)[0]
                current.scores[verifier.name] = score
                if score >= threshold:
                    break
            critic = replace(plan.sampling, temperature=0.0, max_new_tokens=min(96, plan.sampling.max_new_tokens))
            asked = CRITIQUE.format(question=question, answer=current.completion.text.strip())
            if not fits(asked, critic):
                break
            critique = call(asked, critic)
            if critique is None:
                break
            current.scores["critique_ok"] = float(critique.text.strip().upper().startswith("CORRECT"))
            if current.scores["critique_ok"]:
                break
            conversation += [{"role": "assistant", "content": current.completion.text},
                             {"role": "user", "content": REVISE.format(critique=critique.text.strip())}]
            if not fits(conversation, plan.sampling):
                break
            revised = call(conversation)
            if revised is None:
                break
            current = keep(revised)
        if current is not None:
            current.chosen = True
        return Outcome(
            text=current.completion.text if current else "",
            answer=current.answer if current else "",
            candidates=candidates,
            votes={},
            usage=usage,
            flags=flags,
        )
