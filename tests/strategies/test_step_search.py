"""step_search (beam and MCTS over reasoning steps) on the tiny model, one slow check on SmolLM2.

A recorder wraps the engine's ``prefill`` and ``decode`` so the tests see every row the search
decoded (its tokens before the call and the completion it got) independently of what the
strategy reports about itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from router.domain import Outcome, Plan, Query
from router.engine import CancelToken, Completion, Engine, FinishReason, SamplingParams, SequenceState
from router.errors import InvalidArgumentError
from router.strategies.base import StrategyContext
from router.strategies.step_search import SearchReport, StepSearch, allocate, call_seed, split_steps, uct
from router.verifiers import ScoredItem, Verifier
from router.verifiers import base as verifier_base
from router.verifiers.answers import extract_answer

QUESTION = "Add 17 and 25. Think step by step, then answer."
MODES = ["beam", "mcts"]
# tiny at T=1 writes random bytes; a space ends a step often enough to get real STOP steps
TINY_OPTIONS = {"beam_width": 2, "branching": 2, "step_tokens": 4, "max_steps": 20, "delimiter": " "}


def make_plan(temperature: float = 1.0, seed: int | None = 7, max_new_tokens: int = 200, **options) -> Plan:
    return Plan(level="search", strategy="step_search", samples=1,
                sampling=SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed),
                policy="test", policy_version="0", reason="test", options=options)


@dataclass
class Call:
    rows: list[list[int]]  # each row's tokens (prompt included) before the call
    params: SamplingParams
    outputs: list[Completion]


@dataclass
class Recorder:
    engine: Engine
    calls: list[Call] = field(default_factory=list)
    prefills: int = 0
    after_call: Callable[[int], None] | None = None  # run after each decode with the number of calls so far

    @property
    def rows(self) -> int:
        return sum(len(c.rows) for c in self.calls)


@pytest.fixture
def rec(tiny: Engine, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(tiny)
    decode, prefill = tiny.decode, tiny.prefill

    def recording_decode(state: SequenceState, params: SamplingParams, **kw) -> list[Completion]:
        before = [list(t) for t in state.tokens]
        out = decode(state, params, **kw)
        recorder.calls.append(Call(before, params, out))
        if recorder.after_call is not None:
            recorder.after_call(len(recorder.calls))
        return out

    def recording_prefill(ids: Sequence[int]) -> SequenceState:
        recorder.prefills += 1
        return prefill(ids)

    monkeypatch.setattr(tiny, "decode", recording_decode)
    monkeypatch.setattr(tiny, "prefill", recording_prefill)
    return recorder


def search(engine: Engine, plan: Plan, cancel: CancelToken | None = None,
           deadline: float | None = None, ctx: StrategyContext | None = None) -> tuple[Outcome, SearchReport]:
    strategy = StepSearch()
    ctx = ctx or StrategyContext(engine=engine, cancel=cancel or CancelToken(), deadline=deadline)
    outcome = strategy.run(Query(text=QUESTION), plan, ctx)
    assert strategy.last_report is not None
    return outcome, strategy.last_report


def chosen_of(outcome: Outcome):
    [chosen] = [c for c in outcome.candidates if c.chosen]
    return chosen


def prompt_ids(engine: Engine) -> list[int]:
    return engine.tokenizer.encode_prompt(QUESTION)


# -- budget ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("budget", [1, 3, 8])
def test_never_exceeds_the_expansion_budget(rec: Recorder, mode: str, budget: int) -> None:
    outcome, report = search(rec.engine, make_plan(mode=mode, expansions=budget, **TINY_OPTIONS))
    assert rec.rows <= budget
    assert report.expansions == rec.rows == outcome.usage.samples
    assert report.rows_per_call == [len(c.rows) for c in rec.calls]
    if report.stopped_by == "budget":
        assert rec.rows == budget, "the budget was not used up"
    assert outcome.text, "some path should have been generated"


def test_beam_decodes_a_round_in_one_call_and_gives_a_short_round_to_the_best_beams(rec: Recorder) -> None:
    outcome, report = search(rec.engine, make_plan(mode="beam", expansions=5, **TINY_OPTIONS))
    assert report.stopped_by == "budget"
    assert [len(c.rows) for c in rec.calls] == [2, 3]  # round 0: root x 2; round 1: 3 left for 2 beams x 2
    first = rec.calls[0]
    paths = [tuple(row + out.token_ids) for row, out in zip(first.rows, first.outputs, strict=True)]
    scores = [math.exp(np.mean(out.logprobs)) for out in first.outputs]
    best = paths[int(np.argmax(scores))]
    second = [tuple(r) for r in rec.calls[1].rows]
    assert second.count(best) == 2 and len(set(second)) == 2, "the best beam should get the two children"


def test_allocate_and_uct() -> None:
    assert allocate(2, 2, 8) == [2, 2]
    assert allocate(2, 2, 3) == [2, 1]
    assert allocate(3, 2, 4) == [2, 1, 1]
    assert allocate(2, 3, 0) == [0, 0]
    from router.strategies.step_search import _Node

    def node(visits: int, value: float) -> _Node:
        return _Node(parent=None, tokens=[], logprobs=[], step_ends=[], finish=None, visits=visits,
                     value_sum=value * visits)

    assert uct(node(0, 0.0), 5, 1.0) == math.inf
    assert uct(node(1, 0.2), 5, 1.0) > uct(node(4, 0.5), 5, 1.0)  # exploration wins at c=1
    assert uct(node(1, 0.2), 5, 0.0) < uct(node(4, 0.5), 5, 0.0)  # pure value at c=0
    assert uct(node(2, 0.3), 9, 1.0) == pytest.approx(0.3 + math.sqrt(math.log(9) / 2))


def test_max_steps_caps_depth_and_mcts_stops_on_an_exhausted_tree(rec: Recorder) -> None:
    opts = {**TINY_OPTIONS, "max_steps": 2}
    outcome, report = search(rec.engine, make_plan(mode="beam", expansions=50, **opts))
    assert all(c.scores["steps"] <= 2 for c in outcome.candidates)
    assert len(rec.calls) <= 2 and report.expansions <= 6
    if report.complete == 0:
        assert report.stopped_by == "max_steps" and outcome.flags.truncated_by_budget
    rec.calls.clear()
    outcome, report = search(rec.engine, make_plan(mode="mcts", expansions=50, **{**opts, "max_steps": 1}))
    assert report.stopped_by == "exhausted"
    assert [len(c.rows) for c in rec.calls] == [2], "only the root can be expanded when max_steps is 1"


def test_answer_token_cap_holds_per_path(rec: Recorder) -> None:
    outcome, report = search(rec.engine, make_plan(mode="beam", expansions=8, max_new_tokens=10, **TINY_OPTIONS))
    assert all(len(c.completion.token_ids) <= 10 for c in outcome.candidates)
    assert all(c.params.max_new_tokens <= 4 for c in rec.calls)
    assert report.stopped_by in ("budget", "exhausted", "complete")


def path_score(logprobs: Sequence[float]) -> float:
    return math.exp(sum(logprobs) / len(logprobs))


@pytest.mark.parametrize("c_puct", [0.0, 100.0])
def test_mcts_selection_follows_uct_with_backed_up_values(rec: Recorder, c_puct: float) -> None:
    search(rec.engine, make_plan(mode="mcts", expansions=6, c_puct=c_puct, **TINY_OPTIONS))
    assert [len(c.rows) for c in rec.calls] == [2, 2, 2]
    first, second, third = rec.calls
    assert all(o.finish_reason is not FinishReason.EOS for o in first.outputs + second.outputs)
    kids = [(row + o.token_ids, o.logprobs) for row, o in zip(first.rows, first.outputs, strict=True)]
    a, b = sorted(kids, key=lambda k: path_score(k[1]), reverse=True)
    assert second.rows[0] == a[0], "with equal visits the better root child is expanded first"
    if c_puct > 0:  # exploration: the root child visited once beats the one visited three times
        assert third.rows[0] == b[0]
    else:  # exploitation on backed-up means: Q(a) is the mean of a and its two children
        grand = [path_score(a[1] + o.logprobs) for o in second.outputs]
        q_a = (path_score(a[1]) + sum(grand)) / 3
        if q_a > path_score(b[1]):
            best = int(np.argmax(grand))
            assert third.rows[0] == second.rows[best] + second.outputs[best].token_ids
        else:
            assert third.rows[0] == b[0]


def test_mcts_greedy_duplicates_make_no_new_nodes(rec: Recorder) -> None:
    outcome, report = search(rec.engine, make_plan(temperature=0.0, mode="mcts", expansions=6, **TINY_OPTIONS))
    assert rec.rows == 6 and report.nodes == 3  # each pair of identical children is one node
    assert len(rec.calls[-1].rows[0]) > len(rec.calls[1].rows[0]) > len(rec.calls[0].rows[0])


# -- forking -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_children_are_forked_from_their_parents_state(
    rec: Recorder, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    selects: list[list[int]] = []
    original = SequenceState.select

    def counting_select(self: SequenceState, rows: list[int]) -> SequenceState:
        selects.append(list(rows))
        return original(self, rows)

    monkeypatch.setattr(SequenceState, "select", counting_select)
    outcome, report = search(rec.engine, make_plan(mode=mode, expansions=8, **TINY_OPTIONS))
    prompt = prompt_ids(rec.engine)
    assert rec.prefills == 1, "the prompt is prefilled once; children come from forks"
    assert len(selects) == len(rec.calls), "one fork (select) per decode call"
    known = {tuple(prompt)}
    for call, rows in zip(rec.calls, selects, strict=True):
        assert len(rows) == len(call.rows)
        for tokens in call.rows:
            assert tuple(tokens) in known, "a row must continue a path generated earlier"
            assert tokens[: len(prompt)] == prompt
        if mode == "mcts":
            assert all(r == call.rows[0] for r in call.rows), "an MCTS call expands one node"
        for tokens, out in zip(call.rows, call.outputs, strict=True):
            known.add(tuple(tokens + out.token_ids))
    assert max(len(r) for c in rec.calls for r in c.rows) > len(prompt), "the search never went below the root"


@pytest.mark.parametrize("mode", MODES)
def test_forked_children_continue_the_parent_cache_exactly(rec: Recorder, mode: str) -> None:
    """Teacher-forced logprobs of the first token of every step equal the ones the search saw."""
    outcome, report = search(rec.engine, make_plan(mode=mode, expansions=8, **TINY_OPTIONS))
    chosen = chosen_of(outcome).completion
    prompt = prompt_ids(rec.engine)
    ends = np.cumsum([len(t) for t in report.step_tokens])
    starts = [0, *ends[:-1]]
    checked = 0
    for start in starts[1:]:
        if start >= len(chosen.token_ids):
            continue
        state = Engine.prefill(rec.engine, prompt + chosen.token_ids[:start])
        logits = state.logits[0].astype(np.float64)
        logprob = logits[chosen.token_ids[start]] - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
        assert logprob == pytest.approx(chosen.logprobs[start], abs=1e-3)
        checked += 1
    assert checked >= 1, "the chosen path should have at least two steps"


# -- seeds -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_search_other_seed_differs(tiny: Engine, mode: str) -> None:
    a, ra = search(tiny, make_plan(seed=11, mode=mode, **TINY_OPTIONS))
    b, rb = search(tiny, make_plan(seed=11, mode=mode, **TINY_OPTIONS))
    c, _ = search(tiny, make_plan(seed=12, mode=mode, **TINY_OPTIONS))
    assert a.text == b.text and ra.steps == rb.steps and ra.rows_per_call == rb.rows_per_call
    assert [(x.completion.token_ids, x.scores) for x in a.candidates] == [
        (x.completion.token_ids, x.scores) for x in b.candidates]
    assert c.text != a.text


def test_call_seeds_are_distinct_and_deterministic() -> None:
    assert len({call_seed(5, i) for i in range(100)}) == 100
    assert call_seed(5, 3) == call_seed(5, 3) != call_seed(6, 3)
    assert call_seed(None, 3) is None
    assert all(0 <= call_seed(2**63 - 1, i) < 2**63 for i in range(5))


# -- anytime -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_deadline_in_the_past_returns_at_once(rec: Recorder, mode: str) -> None:
    forwards = rec.engine.stats.forward_calls
    start = time.monotonic()
    outcome, report = search(rec.engine, make_plan(mode=mode, **TINY_OPTIONS), deadline=start - 1.0)
    assert time.monotonic() - start < 0.5
    assert outcome.flags.truncated_by_deadline and not outcome.flags.truncated_by_budget
    assert rec.engine.stats.forward_calls == forwards and not rec.calls and rec.prefills == 0
    assert outcome.text == "" and outcome.usage.samples == 0 and report.stopped_by == "deadline"


@pytest.mark.parametrize("mode", MODES)
def test_cancel_before_start_returns_at_once(rec: Recorder, mode: str) -> None:
    token = CancelToken()
    token.cancel()
    forwards = rec.engine.stats.forward_calls
    outcome, report = search(rec.engine, make_plan(mode=mode, **TINY_OPTIONS), cancel=token)
    assert rec.engine.stats.forward_calls == forwards and not rec.calls
    assert not outcome.flags.truncated_by_deadline and not outcome.flags.truncated_by_budget
    assert outcome.text == "" and report.stopped_by == "cancelled"


def first_call_paths(rec: Recorder) -> dict[str, float]:
    first = rec.calls[0]
    return {rec.engine.tokenizer.decode(o.token_ids): math.exp(np.mean(o.logprobs)) for o in first.outputs}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["deadline", "cancel", "deadline_inside_decode"])
def test_interrupted_mid_search_returns_the_best_so_far(
    rec: Recorder, mode: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = CancelToken()
    ctx = StrategyContext(engine=rec.engine, cancel=token)
    original = rec.engine.decode

    def interrupt(n_calls: int) -> None:
        if how == "deadline":
            ctx.deadline = time.monotonic() - 1.0
        elif how == "cancel":
            token.cancel()

    if how == "deadline_inside_decode":  # the second call runs out of time inside the engine
        def late_decode(state, params, **kw):
            if rec.calls:
                kw["deadline"] = time.monotonic() - 1.0
            return original(state, params, **kw)

        monkeypatch.setattr(rec.engine, "decode", late_decode)
    else:
        rec.after_call = interrupt
    outcome, report = search(rec.engine, make_plan(mode=mode, expansions=8, **TINY_OPTIONS), ctx=ctx)
    assert len(rec.calls) == (2 if how == "deadline_inside_decode" else 1)
    assert outcome.flags.truncated_by_deadline == (how != "cancel")
    assert not outcome.flags.truncated_by_budget
    assert report.stopped_by == ("cancelled" if how == "cancel" else "deadline")
    paths = first_call_paths(rec)
    assert outcome.text in paths, "the answer should be one of the paths generated before the stop"
    if not any(c.completion.finish_reason is FinishReason.EOS for c in outcome.candidates):
        assert paths[outcome.text] == pytest.approx(max(paths.values()))
    assert outcome.usage.samples == rec.rows


# -- text, scores and usage --------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_text_is_the_concatenation_of_the_chosen_steps(rec: Recorder, mode: str) -> None:
    outcome, report = search(rec.engine, make_plan(mode=mode, expansions=8, **TINY_OPTIONS))
    chosen = chosen_of(outcome).completion
    assert outcome.text == "".join(report.steps) == chosen.text
    assert [t for step in report.step_tokens for t in step] == chosen.token_ids
    assert outcome.text == rec.engine.tokenizer.decode(chosen.token_ids)
    assert len(report.steps) == len(report.step_tokens) == chosen_of(outcome).scores["steps"] >= 2
    # every step is the completion of one recorded decode row that continued the steps before it
    prefix = prompt_ids(rec.engine)
    decoded = {(tuple(row), tuple(out.token_ids)): out for c in rec.calls for row, out in zip(c.rows, c.outputs,
                                                                                              strict=True)}
    for i, step in enumerate(report.step_tokens):
        out = decoded.get((tuple(prefix), tuple(step)))
        assert out is not None, f"step {i} was not decoded from the path before it"
        if i < len(report.step_tokens) - 1:  # inner steps end at the delimiter or the step cap
            assert out.finish_reason is FinishReason.STOP or len(step) == TINY_OPTIONS["step_tokens"]
            if out.finish_reason is FinishReason.STOP:
                assert " " in rec.engine.tokenizer.decode(step)
        prefix = prefix + step


def test_split_steps_keeps_a_split_character_whole() -> None:
    def decode(ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    tokens = list(b"ab\n") + list("é".encode()) + list(b"c")  # é is two bytes
    text, steps = split_steps(decode, tokens, [3, 4, len(tokens)])  # step 2 ends inside é
    assert text == "ab\néc" and "".join(steps) == text
    assert steps == ["ab\n", "", "éc"]


@pytest.mark.parametrize("mode", MODES)
def test_usage_adds_up(rec: Recorder, mode: str) -> None:
    outcome, report = search(rec.engine, make_plan(mode=mode, expansions=8, **TINY_OPTIONS))
    u = outcome.usage
    assert u.prompt_tokens == len(prompt_ids(rec.engine))
    assert u.completion_tokens == sum(len(o.token_ids) for c in rec.calls for o in c.outputs) > 0
    assert u.samples == rec.rows == report.expansions == 8
    assert u.model_calls == len(rec.calls) == report.decode_calls
    assert outcome.answer == (extract_answer(outcome.text) or "")


@pytest.mark.parametrize("mode", MODES)
def test_default_score_is_the_path_self_likelihood(tiny: Engine, mode: str) -> None:
    outcome, _ = search(tiny, make_plan(mode=mode, expansions=8, **TINY_OPTIONS))
    for cand in outcome.candidates:
        lp = cand.completion.logprobs
        assert cand.scores["path"] == pytest.approx(math.exp(sum(lp) / len(lp)))
        assert 0.0 <= cand.scores["path"] <= 1.0
    chosen = chosen_of(outcome)
    complete = [c for c in outcome.candidates if c.completion.finish_reason is FinishReason.EOS]
    pool = complete or outcome.candidates
    if mode == "beam" or complete:
        assert chosen.scores["path"] == max(c.scores["path"] for c in pool)
    assert outcome.flags.truncated_by_budget == (not complete)


@pytest.mark.parametrize("mode", MODES)
def test_a_complete_path_is_final_and_preferred(rec: Recorder, mode: str) -> None:
    """Search seeds until a path ends with EOS (tiny at T=1 does so within a few tries)."""
    for seed in range(60):
        rec.calls.clear()
        outcome, report = search(rec.engine, make_plan(seed=seed, mode=mode, expansions=8,
                                                       **{**TINY_OPTIONS, "step_tokens": 12}))
        if report.complete:
            break
    else:
        pytest.fail("no complete path in 60 seeds")
    chosen = chosen_of(outcome)
    assert chosen.completion.finish_reason is FinishReason.EOS
    assert not outcome.flags.truncated_by_budget
    prompt = prompt_ids(rec.engine)
    completes = [c for c in outcome.candidates if c.completion.finish_reason is FinishReason.EOS]
    assert len(completes) == report.complete
    assert chosen.scores["path"] == max(c.scores["path"] for c in completes)
    for c in completes:  # never expanded further
        assert all(row != prompt + c.completion.token_ids for call in rec.calls for row in call.rows)


class LengthVerifier(Verifier):
    """Prefers paths whose text is long; records what it was shown."""

    name = "test_length"

    def __init__(self) -> None:
        self.items: list[ScoredItem] = []

    def score(self, items: Sequence[ScoredItem], engine: Engine) -> list[float]:
        self.items.extend(items)
        return [len(i.completion.token_ids) / (1 + len(i.completion.token_ids)) for i in items]


@pytest.mark.parametrize("mode", MODES)
def test_a_named_verifier_scores_the_partial_paths(
    tiny: Engine, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = LengthVerifier()
    monkeypatch.setitem(verifier_base._REGISTRY, verifier.name, verifier)
    outcome, report = search(tiny, make_plan(mode=mode, expansions=8, verifier=verifier.name, **TINY_OPTIONS))
    assert len(verifier.items) >= report.nodes > 0  # every child is scored, duplicates included
    assert verifier.items and all(i.answer == "" and i.question == QUESTION for i in verifier.items)
    assert all(i.completion.text == tiny.tokenizer.decode(i.completion.token_ids) for i in verifier.items)
    for cand in outcome.candidates:
        n = len(cand.completion.token_ids)
        assert cand.scores["path"] == pytest.approx(n / (1 + n))


def test_bad_options_are_rejected(tiny: Engine) -> None:
    for options in ({"mode": "dfs"}, {"beam_width": 0}, {"branching": "two"}, {"expansions": -1},
                    {"delimiter": ""}, {"c_puct": -1}, {"max_steps": 1.5}, {"verifier": "no_such_verifier"}):
        with pytest.raises(InvalidArgumentError):
            search(tiny, make_plan(**options))


def test_greedy_duplicates_are_counted_but_kept_once(rec: Recorder) -> None:
    outcome, report = search(rec.engine, make_plan(temperature=0.0, mode="beam", expansions=6, **TINY_OPTIONS))
    assert rec.rows == 6
    paths = [tuple(c.completion.token_ids) for c in outcome.candidates]
    assert len(paths) == len(set(paths))
    assert report.nodes < report.expansions


# -- SmolLM2 -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_smollm2_steps_split_at_newlines(smollm2: Engine, mode: str) -> None:
    plan = make_plan(temperature=0.7, seed=1, max_new_tokens=96, mode=mode, expansions=4, step_tokens=24)
    strategy = StepSearch()
    outcome = strategy.run(Query(text="What is 12 + 7? Think step by step."), plan,
                           StrategyContext(engine=smollm2, cancel=CancelToken()))
    report = strategy.last_report
    assert report is not None and report.expansions <= 4 and outcome.usage.samples == report.expansions
    assert outcome.text and outcome.text == "".join(report.steps)
    for step, tokens in zip(report.steps[:-1], report.step_tokens[:-1], strict=True):
        assert "\n" in step or len(tokens) == 24
