"""Bad input gets the right status code and field details; internal errors never leak a traceback."""

from __future__ import annotations

import time

import grpc
import pytest

from router.client import RouterClient, field_violations
from router.domain import Outcome
from router.policy import LevelSpec, Policy, PolicySet
from router.strategies import Strategy, register

from .conftest import ThreadedServer

BAD = [
    ({"text": ""}, "query.text"),
    ({"text": "   "}, "query.text"),
    ({"text": "x" * 2001}, "query.text"),
    ({"text": "banana " * 290}, "query.text"),  # under the char limit, over the tiny model's context
    ({"text": "\x00"}, "query.text"),  # control and format characters only: nothing to answer
    ({"text": "\u200b\ufeff \u2060"}, "query.text"),
    ({"text": "hi", "messages": [{"role": "user", "content": "hi"}]}, "query"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "query.messages[0].role"),
    ({"messages": [{"role": "user", "content": " "}]}, "query.messages"),
    ({"messages": [{"role": "system", "content": "Be brief."}]}, "query.messages"),
    ({"messages": [{"role": "user", "content": "x" * 1001}, {"role": "user", "content": "y" * 1000}]},
     "query.messages"),
    # 40 control-token strings are 40 tokens if matched as specials, but ~240 as the text they are:
    # over the tiny model's 256-token context once counted as the engine will encode them
    ({"text": "<|im_end|>" * 40}, "query.text"),
    ({"text": "hi", "request_id": "r" * 257}, "request_id"),
    ({"text": "hi", "unit_id": "u" * 257}, "hints.unit_id"),
    ({"text": "hi", "policy": "nope"}, "hints.policy"),
    ({"text": "hi", "level": "turbo"}, "hints.level"),
    ({"text": "hi", "temperature": -1.0}, "hints.sampling.temperature"),
    ({"text": "hi", "top_p": 1.5}, "hints.sampling.top_p"),
    ({"text": "hi", "max_new_tokens": 0}, "hints.sampling.max_new_tokens"),
    ({"text": "hi", "max_new_tokens": 10**6}, "hints.sampling.max_new_tokens"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_input_is_invalid_argument_with_field(client: RouterClient, kwargs: dict, field: str) -> None:
    kwargs = dict(kwargs)
    text = kwargs.pop("text", "")
    for call in (client.generate, client.route):
        with pytest.raises(grpc.RpcError) as err:
            call(text, **kwargs)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in field_violations(err.value)] == [field]
        assert "Traceback" not in err.value.details()


def test_deadline_that_cannot_fit_one_pass_is_refused_before_any_work(
    client: RouterClient, tiny_server: ThreadedServer
) -> None:
    engine = tiny_server.core.engine
    before = engine.stats.forward_calls
    with pytest.raises(grpc.RpcError) as err:
        client.generate("Add 17 and 25.", timeout_s=0.02)
    assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.2)
    assert engine.stats.forward_calls == before
    assert tiny_server.core.slots.in_use == 0


class _Broken(Strategy):
    name = "broken-for-test"

    def run(self, query, plan, ctx) -> Outcome:  # noqa: ANN001
        raise RuntimeError("secret internal detail")


def test_internal_error_has_an_id_and_no_traceback(client: RouterClient, tiny_server: ThreadedServer) -> None:
    register(_Broken())
    core = tiny_server.core
    fixed = core.policies.get("")
    broken_level = LevelSpec("broken", "broken-for-test", 1, fixed.level("single").sampling)
    original = core.policies
    core.set_policies(PolicySet([Policy("fixed", fixed.levels + (broken_level,), "single")], default="fixed"))
    try:
        with pytest.raises(grpc.RpcError) as err:
            client.generate("hi", level="broken")
    finally:
        core.set_policies(original)
    assert err.value.code() is grpc.StatusCode.INTERNAL
    assert "error id" in err.value.details()
    assert "secret" not in err.value.details() and "Traceback" not in err.value.details()
    assert core.slots.in_use == 0


def test_a_request_body_that_is_not_the_message_is_invalid_argument(
    client: RouterClient, tiny_server: ThreadedServer
) -> None:
    registry = tiny_server.server.metrics.registry
    labels = {"rpc": "Generate", "code": "INVALID_ARGUMENT"}
    before = registry.get_sample_value("router_rpcs_total", labels) or 0.0
    for method in ("Generate", "GenerateStream", "Route", "SubmitFeedback"):
        call = getattr(client.channel, "unary_stream" if method == "GenerateStream" else "unary_unary")(
            f"/router.v1.RouterService/{method}")
        with pytest.raises(grpc.RpcError) as err:
            result = call(b"\xff\xff\xff\xff\x0f", timeout=5)
            if method == "GenerateStream":
                list(result)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, method
        [(field, description)] = field_violations(err.value)
        assert field == "request" and "router.v1." in description
        assert "class" not in err.value.details() and "Traceback" not in err.value.details()
    assert registry.get_sample_value("router_rpcs_total", labels) == before + 1
    assert client.generate("Add 2 and 3.").text  # and the server goes on answering


def test_a_request_id_is_single_use_and_an_answered_one_is_never_overwritten(
    client: RouterClient, tiny_server: ThreadedServer
) -> None:
    first = client.generate("Add 2 and 3.", request_id="once-1")
    assert client.feedback("once-1", "correct", score=1.0)
    with pytest.raises(grpc.RpcError) as err:
        client.generate("Name a colour.", request_id="once-1", level="self_consistency", max_samples=2)
    assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "once-1" in err.value.details() and "answered" in err.value.details()
    store = tiny_server.core.store
    assert store.flush(timeout=10)
    stored = store.decision("once-1")
    assert stored["plan"]["level"] == first.decision.level == "single"
    assert stored["outcome"]["text"] == first.text
    assert tiny_server.core.slots.in_use == 0


def test_a_request_id_in_flight_cannot_be_used_twice(client: RouterClient, tiny_server: ThreadedServer) -> None:
    running = client.generate_future("Write a long story about a dragon.", request_id="twice-1",
                                     level="self_consistency", max_new_tokens=24)
    core = tiny_server.core
    deadline = time.monotonic() + 10
    while "twice-1" not in core._ids_in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(grpc.RpcError) as err:
        client.generate("Add 2 and 3.", request_id="twice-1")
    assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "running" in err.value.details()
    assert running.result().request_id == "twice-1"


def test_a_refused_or_cancelled_request_may_be_retried_under_its_id(
    client: RouterClient, tiny_server: ThreadedServer
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.generate("Add 2 and 3.", request_id="retry-1", level="turbo")
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert client.generate("Add 2 and 3.", request_id="retry-1").request_id == "retry-1"

    core = tiny_server.core
    cancelled = client.generate_future("Write a long story about a dragon.", request_id="retry-2",
                                       level="self_consistency", max_new_tokens=64)
    deadline = time.monotonic() + 10
    while core.slots.in_use == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    cancelled.cancel()
    while core.slots.in_use and time.monotonic() < deadline:
        time.sleep(0.01)
    assert core.store.flush(timeout=10)
    assert core.store.decision("retry-2")["outcome"] is None  # recorded as cancelled
    retried = client.generate("Add 2 and 3.", request_id="retry-2")
    assert core.store.flush(timeout=10)
    assert core.store.decision("retry-2")["outcome"]["text"] == retried.text


FEEDBACK_BAD = [
    ({"score": float("nan")}, "score"),
    ({"score": float("inf")}, "score"),
    ({"score": float("-inf")}, "score"),
    ({"key": "   "}, "key"),
    ({"key": "k" * 65}, "key"),
    ({"label": "l" * 257}, "label"),
    ({"comment": "c" * 4001}, "comment"),
]


@pytest.mark.parametrize(("kwargs", "field"), FEEDBACK_BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(FEEDBACK_BAD)])
def test_bad_feedback_is_invalid_argument_and_stores_nothing(
    client: RouterClient, tiny_server: ThreadedServer, kwargs: dict, field: str
) -> None:
    rid = client.generate("Add 2 and 3.").request_id
    args = {"key": "correct", **kwargs}
    with pytest.raises(grpc.RpcError) as err:
        client.feedback(rid, **args)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(err.value)] == [field]
    assert tiny_server.core.store.feedback_count(rid) == 0
