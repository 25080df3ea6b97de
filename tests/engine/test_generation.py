"""Stop strings, length, cancel, deadline, seeds and forks on the tiny exported model."""

from __future__ import annotations

import threading
import time

import pytest

from router.engine import CancelToken, Engine, FinishReason, SamplingParams

PROMPT = "Count the letters in the word banana."


def test_max_new_tokens_is_exact(tiny: Engine) -> None:
    for n in (1, 5, 9):
        c = tiny.generate(PROMPT, SamplingParams(max_new_tokens=n))[0]
        assert c.completion_tokens == n and c.finish_reason is FinishReason.LENGTH


def test_stop_string_cuts_text_before_it(tiny: Engine) -> None:
    full = tiny.generate(PROMPT, SamplingParams(max_new_tokens=30))[0]
    assert len(full.text) > 12
    stop = full.text[8:11]
    first = full.text.find(stop)
    c = tiny.generate(PROMPT, SamplingParams(max_new_tokens=30, stop=(stop,)))[0]
    assert c.finish_reason is FinishReason.STOP
    assert c.text == full.text[:first]
    assert c.token_ids == full.token_ids[: c.completion_tokens]
    assert c.completion_tokens < full.completion_tokens


def test_generation_stops_at_the_context_limit(tiny: Engine) -> None:
    ids = tiny.tokenizer.encode_prompt(PROMPT)
    c = tiny.generate(PROMPT, SamplingParams(max_new_tokens=tiny.context_length - 1))[0]
    assert c.finish_reason in (FinishReason.LENGTH, FinishReason.EOS)
    if c.finish_reason is FinishReason.LENGTH:
        assert len(ids) + c.completion_tokens == tiny.context_length


def test_same_seed_same_samples_and_rows_independent_of_n(tiny: Engine) -> None:
    params = SamplingParams(temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=12, seed=123)
    a = tiny.generate(PROMPT, params, n=6)
    b = tiny.generate(PROMPT, params, n=6)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert [c.token_ids for c in tiny.generate(PROMPT, params, n=3)] == [c.token_ids for c in a[:3]]
    other = tiny.generate(PROMPT, SamplingParams(temperature=1.0, max_new_tokens=12, seed=124), n=6)
    assert [c.token_ids for c in other] != [c.token_ids for c in a]


@pytest.mark.parametrize("temperature", [1e-45, 1e-39])
def test_a_vanishing_temperature_generates_the_greedy_tokens(tiny: Engine, temperature: float) -> None:
    """It used to give NaN weights and token 0 at every step."""
    greedy = tiny.generate(PROMPT, SamplingParams(max_new_tokens=12))[0]
    for extra in ({}, {"top_k": 40, "top_p": 0.9}):
        params = SamplingParams(temperature=temperature, max_new_tokens=12, seed=3, **extra)
        for c in tiny.generate(PROMPT, params, n=2):
            assert c.token_ids == greedy.token_ids and c.logprobs == pytest.approx(greedy.logprobs)


def test_cancel_before_start_returns_nothing_generated(tiny: Engine) -> None:
    token = CancelToken()
    token.cancel()
    forwards = tiny.stats.forward_calls
    comps = tiny.generate(PROMPT, SamplingParams(max_new_tokens=50), n=3, cancel=token)
    assert [c.finish_reason for c in comps] == [FinishReason.CANCELLED] * 3
    assert all(c.completion_tokens == 0 for c in comps)
    assert tiny.stats.forward_calls == forwards, "a cancelled request should not even prefill"


def test_cancel_from_another_thread_stops_within_one_step(tiny: Engine) -> None:
    token = CancelToken()
    start_steps = tiny.stats.decode_steps
    seen: dict[str, int] = {}

    def cancel_after_a_few_steps() -> None:
        while tiny.stats.decode_steps - start_steps < 5:
            time.sleep(0.0005)
        seen["at_cancel"] = tiny.stats.decode_steps - start_steps
        token.cancel()

    watcher = threading.Thread(target=cancel_after_a_few_steps)
    watcher.start()
    comps = tiny.generate(PROMPT, SamplingParams(temperature=1.0, max_new_tokens=120, seed=1), n=2, cancel=token)
    watcher.join()
    steps = tiny.stats.decode_steps - start_steps
    # A sampled row of the random model may reach EOS before the cancel; the others must be cancelled.
    reasons = [c.finish_reason for c in comps]
    assert FinishReason.CANCELLED in reasons and set(reasons) <= {FinishReason.CANCELLED, FinishReason.EOS}
    assert steps - seen["at_cancel"] <= 1, "the decode loop went on after cancel"
    assert all(c.completion_tokens <= steps + 1 for c in comps)


def test_deadline_returns_what_was_made(tiny: Engine) -> None:
    forwards = tiny.stats.forward_calls
    c = tiny.generate(PROMPT, SamplingParams(max_new_tokens=100), deadline=time.monotonic() - 1)[0]
    assert c.finish_reason is FinishReason.DEADLINE and c.completion_tokens == 0
    assert tiny.stats.forward_calls == forwards
    # A deadline that lands mid-generation: tokens so far come back, marked.
    slow = SamplingParams(temperature=1.0, max_new_tokens=tiny.context_length - 40, seed=3)
    start = time.monotonic()
    c = tiny.generate(PROMPT, slow, n=16, deadline=start + 0.02)[0]
    if c.finish_reason is FinishReason.DEADLINE:
        assert 0 <= c.completion_tokens < slow.max_new_tokens
    else:  # the machine was fast enough to finish: then it cannot have run past the limit
        assert c.finish_reason in (FinishReason.LENGTH, FinishReason.EOS)


def test_a_step_that_would_end_past_the_deadline_is_not_started(tiny: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every forward pass takes 60 ms; with the deadline 150 ms after the prefill, steps start at
    # ~0, 60 and 120 ms if only "now < deadline" is checked, and the third ends ~30 ms late; not
    # starting it ends the call ~30 ms early. The 15 ms allowance is for a busy machine's wake-ups.
    feed = tiny._feed

    def slow_feed(state, new, greedy=False) -> None:  # noqa: ANN001
        time.sleep(0.06)
        feed(state, new, greedy)

    state = tiny.prefill(tiny.tokenizer.encode_prompt(PROMPT))
    monkeypatch.setattr(tiny, "_feed", slow_feed)
    deadline = time.monotonic() + 0.15
    [c] = tiny.decode(state, SamplingParams(max_new_tokens=50), deadline=deadline)
    finished = time.monotonic()
    assert c.finish_reason is FinishReason.DEADLINE
    assert c.completion_tokens >= 2
    assert finished <= deadline + 0.015, f"ran {1000 * (finished - deadline):.1f} ms past the deadline"


def test_fork_then_extend_then_decode(tiny: Engine) -> None:
    prompt = tiny.tokenizer.encode_prompt(PROMPT)
    state = tiny.prefill(prompt)
    children = state.fork(3)
    assert children.rows == 3 and state.rows == 1
    steps = [[], tiny.tokenizer.encode(" banana"), tiny.tokenizer.encode(" word")]
    tiny.extend(children, steps)
    params = SamplingParams(max_new_tokens=4, stop=("\n",))
    comps = tiny.decode(children, params)
    assert len(comps) == 3
    for r in range(3):
        assert children.tokens[r] == prompt + steps[r] + comps[r].token_ids
        assert comps[r].prompt_tokens == len(prompt) + len(steps[r])
    # the parent state is untouched by its children
    again = tiny.decode(state.select([0]), params)[0]
    assert again.token_ids == comps[0].token_ids


@pytest.mark.parametrize("rows", [1, 4])
def test_select_drops_padding_every_row_shares(tiny: Engine, rows: int) -> None:
    state = tiny.prefill(tiny.tokenizer.encode_prompt(PROMPT)).fork(rows)
    tiny.extend(state, [[5] * (r + 1) for r in range(rows)])
    last = state.select([rows - 1])
    assert last.slots == int(last.lengths[0])  # no padding left in a single row
