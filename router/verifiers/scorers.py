"""Verifiers that need no training: self-likelihood, agreement, and an LM judge on the same model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from router.engine import Engine
from router.verifiers.base import ScoredItem, Verifier


class SelfLikelihood(Verifier):
    """``exp(mean token logprob)``: the geometric-mean probability the model gave its own tokens."""

    name = "self_likelihood"

    def score(self, items: Sequence[ScoredItem], engine: Engine) -> list[float]:
        return [math.exp(item.completion.mean_logprob) if item.completion.logprobs else 0.0 for item in items]


class Agreement(Verifier):
    """Vote share of the candidate's answer among all candidates; 0 for an abstention."""

    name = "agreement"

    def score(self, items: Sequence[ScoredItem], engine: Engine) -> list[float]:
        return [item.votes.get(item.answer, 0) / item.total if item.answer and item.total else 0.0 for item in items]


JUDGE_PROMPT = (
    "Here is a question and a proposed answer.\n\nQuestion: {question}\n\nProposed answer: {answer}\n\n"
    "Is the proposed answer correct? Reply with yes or no."
)


class LMJudge(Verifier):
    """P("yes") / (P("yes") + P("no")) for the next token after a judging prompt, on the same model."""

    name = "lm_judge"

    def __init__(self) -> None:
        self._ids: dict[int, tuple[list[int], list[int]]] = {}

    def _yes_no(self, engine: Engine) -> tuple[list[int], list[int]]:
        key = id(engine.tokenizer)
        if key not in self._ids:
            def first_tokens(words: tuple[str, ...]) -> list[int]:
                return sorted({engine.tokenizer.encode(w)[0] for w in words})

            self._ids[key] = (first_tokens(("yes", "Yes", " yes", " Yes", "YES")),
                              first_tokens(("no", "No", " no", " No", "NO")))
        return self._ids[key]

    def score(self, items: Sequence[ScoredItem], engine: Engine) -> list[float]:
        yes, no = self._yes_no(engine)
        out = []
        for item in items:
            shown = item.completion.text.strip() or "(no answer)"
            ids = self._prompt_ids(engine, item.question, shown[-1500:])
            logits = engine.prefill(ids).logits[0].astype(np.float64)
            top = logits.max()
            p_yes = float(np.exp(logits[yes] - top).sum())
            p_no = float(np.exp(logits[no] - top).sum())
            out.append(p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5)
        return out

    @staticmethod
    def _prompt_ids(engine: Engine, question: str, answer: str) -> list[int]:
        """The judging prompt's ids, shortened to fit the model's context: a question near the
        context limit plus an answer would not. The middle of the question goes first (its start
        and its end say what is asked), then the start of the answer (its end holds the answer)."""
        for _ in range(32):
            prompt = JUDGE_PROMPT.format(question=question, answer=answer)
            ids = engine.tokenizer.encode_prompt(prompt)
            over = len(ids) - (engine.context_length - 1)
            if over <= 0:
                return ids
            cut = math.ceil(over * len(prompt) / len(ids)) + 8  # characters, at this prompt's chars per token
            if len(question) > 2 * CUT_MARK_ROOM:
                keep = max(CUT_MARK_ROOM, len(question) - cut) // 2
                question = question[:keep] + " [...] " + question[-keep:]
            else:
                answer = "[...] " + answer[min(len(answer), cut):]
        return ids  # not reached with a template of sane size; prefill would then name the problem


CUT_MARK_ROOM = 32  # characters of a question always kept at each end
