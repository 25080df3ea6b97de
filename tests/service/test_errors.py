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
    ({"text": "hi", "messages": [{"role": "user", "content": "hi"}]}, "query"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "query.messages[0].role"),
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
