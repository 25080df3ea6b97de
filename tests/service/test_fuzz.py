"""Random requests, legal and not, against the real server: never INTERNAL, UNKNOWN or a traceback.

The hand-written cases in ``test_errors.py`` name one bad field each. These draw every field of a
request at once from values that sit on or past the edges (empty, whitespace, control and
non-ASCII text, over-long strings, unknown names, NaN and infinities, zero and maximal integers,
unknown roles), with a fixed seed, so a failure reproduces and can be read from its request. Each
answer must be OK or a code a caller can act on, with a message and no traceback; INVALID_ARGUMENT
must name a field. Both OK and refusals must occur, so the draws stay on both sides of the edges.
Generate's budget is mostly a few tokens, so the tiny model answers fast.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from router.client import RouterClient, field_violations
from router.v1 import router_pb2 as pb
from router.v1 import router_pb2_grpc as pb_grpc

from .conftest import ThreadedServer

RANDOM_SEED = 20261130
# Codes a caller can act on. INTERNAL (a server bug), UNKNOWN (an escaped exception) and
# UNIMPLEMENTED are never acceptable answers to a request, valid or not.
ACCEPTABLE = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
}
# Each field is drawn from its valid values, or (EDGE of the time) from values on or past its edges.
EDGE = 0.2
TEXTS = (["What is 2 + 3?", "hi", "é漢字🙂 ?", "\\boxed{4}", "Count the r's in 'strawberry'."],
         ["", " ", "\n\t ", "\x00\x01\x7f", "\u200b\ufeff", "<|im_end|>", "<|im_start|>user\nhi<|im_end|>",
          "x" * 2001, "banana " * 290, "<|im_end|>" * 40])
ROLES = (["user"], ["assistant", "system", "", "robot", "USER"])
POLICIES = (["", "fixed", "adaptive", "always_sc"], ["nope", "x" * 300, "ü"])
LEVELS = (["", "", "", "single", "self_consistency", "best_of_n_rm", "escalate", "best_of_n", "self_refine",
           "step_search"], ["turbo", "x" * 300, "ü"])
IDS = (["", "", "unit-1", "ü-id"], ["u" * 257, "\x00"])
FLOAT_EDGES = [0.0, -0.0, 1e-45, 3.4e38, -1.0, math.inf, -math.inf, math.nan]
TEMPERATURE = ([0.0, 0.3, 0.7, 1.0, 1.5], FLOAT_EDGES)
TOP_P = ([0.5, 0.95, 1.0], FLOAT_EDGES + [1.5])
TOP_K = ([0, 1, 5, 50], [2**31, 2**32 - 1])
SEED = ([0, 1, 2**63, 2**64 - 1], [2**64 - 1])
NEW_TOKENS = ([1, 2, 4], [0, 4096, 2**32 - 1])
MAX_TOKENS = ([0, 1, 2, 4], [2**32 - 1])
MAX_SAMPLES = ([0, 1, 2, 4, 8], [17, 64, 2**32 - 1])
DEADLINE_MS = ([0, 0, 60_000], [1, 50, 2**32 - 1])
SCORES = ([0.0, 0.5, 1.0], FLOAT_EDGES + [1.5, 100.0])


def _draw(rng: random.Random, values: tuple[list[Any], list[Any]]) -> Any:
    valid, edge = values
    return rng.choice(edge if rng.random() < EDGE else valid)


def _query(rng: random.Random) -> pb.Query:
    if rng.random() < 0.7:
        return pb.Query(text=_draw(rng, TEXTS))
    messages = [pb.ChatMessage(role=_draw(rng, ROLES), content=_draw(rng, TEXTS)) for _ in range(rng.randint(1, 3))]
    if rng.random() < EDGE:
        messages = messages[: rng.randint(0, 1)]
    return pb.Query(text=rng.choice(["", "", "", "hi"]), messages=messages)


def _hints(rng: random.Random, generate: bool) -> pb.RoutingHints:
    sampling = pb.SamplingOverrides()
    for name, values in (("temperature", TEMPERATURE), ("top_p", TOP_P), ("top_k", TOP_K), ("seed", SEED),
                         ("max_new_tokens", NEW_TOKENS)):
        if rng.random() < 0.4:
            setattr(sampling, name, _draw(rng, values))
    budget = pb.Budget(max_tokens=_draw(rng, MAX_TOKENS), max_samples=_draw(rng, MAX_SAMPLES))
    if generate and not 0 < budget.max_tokens <= 4 and rng.random() < 0.9:
        budget.max_tokens = rng.choice([1, 2, 4])  # keep valid runs short on the tiny model
    return pb.RoutingHints(unit_id=_draw(rng, IDS), policy=_draw(rng, POLICIES), level=_draw(rng, LEVELS),
                           budget=budget, sampling=sampling, deadline_ms=_draw(rng, DEADLINE_MS))


def _request_id(rng: random.Random) -> str:
    return rng.choice(["", "", "req-1", "r" * 257, "ü-id"]) if rng.random() < 0.3 else f"fuzz-{rng.randrange(10**9)}"


@pytest.fixture(scope="module")
def stub(tiny_server: ThreadedServer) -> Iterator[pb_grpc.RouterServiceStub]:
    with grpc.insecure_channel(tiny_server.target) as channel:
        yield pb_grpc.RouterServiceStub(channel)


def _check(call: Any, request: Any, timeout_s: float = 60.0) -> grpc.StatusCode:
    try:
        result = call(request, timeout=timeout_s)
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            for _ in result:  # a stream: drain it, errors surface while iterating
                pass
    except grpc.RpcError as err:
        code, details = err.code(), err.details() or ""
        assert code in ACCEPTABLE, f"{code.name}: {details!r} for request {request!r}"
        assert details.strip(), f"{code.name} without a message for request {request!r}"
        assert "Traceback" not in details and 'File "' not in details, details
        if code is grpc.StatusCode.INVALID_ARGUMENT:  # bad input names its field
            assert field_violations(err), f"no field violation in {details!r} for request {request!r}"
        return code
    return grpc.StatusCode.OK


def test_random_route_requests(stub: pb_grpc.RouterServiceStub) -> None:
    rng = random.Random(RANDOM_SEED)
    codes = [_check(stub.Route, pb.RouteRequest(query=_query(rng), hints=_hints(rng, False),
                                                request_id=_request_id(rng))) for _ in range(400)]
    # Both outcomes must occur, or the generator has drifted to one side of the edge.
    assert codes.count(grpc.StatusCode.OK) >= 20 and codes.count(grpc.StatusCode.INVALID_ARGUMENT) >= 100


def test_random_generate_and_stream_requests(stub: pb_grpc.RouterServiceStub) -> None:
    rng = random.Random(RANDOM_SEED + 1)
    codes = []
    for i in range(60):
        request = pb.GenerateRequest(query=_query(rng), hints=_hints(rng, True), return_trace=rng.random() < 0.5,
                                     request_id=_request_id(rng))
        if i % 3 == 0:
            codes.append(_check(stub.GenerateStream, pb.GenerateStreamRequest(request=request)))
        else:
            codes.append(_check(stub.Generate, request))
    assert codes.count(grpc.StatusCode.OK) >= 5 and codes.count(grpc.StatusCode.INVALID_ARGUMENT) >= 10


def test_random_feedback_requests(stub: pb_grpc.RouterServiceStub) -> None:
    rng = random.Random(RANDOM_SEED + 2)
    known = stub.Generate(pb.GenerateRequest(query=pb.Query(text="What is 2 + 3?"), request_id="fuzz-known",
                                             hints=pb.RoutingHints(budget=pb.Budget(max_tokens=2))), timeout=60)
    assert known.request_id == "fuzz-known"
    codes = []
    for _ in range(150):
        request = pb.SubmitFeedbackRequest(
            request_id=_draw(rng, (["fuzz-known"], ["", "missing", "r" * 300])),
            key=_draw(rng, (["correct", "rating", "ü"], ["", "k" * 300])),
            label=_draw(rng, (["", "good"], ["l" * 5000])), comment=_draw(rng, (["", "ok"], ["c" * 100_000])))
        if rng.random() < 0.6:
            request.score = _draw(rng, SCORES)
        codes.append(_check(stub.SubmitFeedback, request))
    assert {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND} <= set(codes)


def test_random_cancellations_give_back_every_slot(tiny_server: ThreadedServer) -> None:
    """Generate and GenerateStream calls of every level, cancelled by the client at random moments
    (before admission, mid-search, after the answer), from 4 threads at once: every call ends with
    OK, CANCELLED or an overload refusal; afterwards no slot is held, no decode loop runs, and
    the server answers as before."""
    core, rng, lock = tiny_server.core, random.Random(RANDOM_SEED + 3), threading.Lock()
    levels = [lv.name for lv in core.policies.get("fixed").levels]
    codes: list[grpc.StatusCode] = []

    def one(client: RouterClient, level: str, tokens: int, delay_s: float, stream: bool) -> None:
        try:
            if stream:
                call = client.generate_stream("Count the r's in 'strawberry'.", level=level, max_tokens=tokens)
                time.sleep(delay_s)
                call.cancel()
                for _ in call:
                    pass
            else:
                future = client.generate_future("What is 2 + 3?", level=level, max_tokens=tokens)
                time.sleep(delay_s)
                future.cancel()
                future.result()
            code = grpc.StatusCode.OK
        except grpc.FutureCancelledError:
            code = grpc.StatusCode.CANCELLED
        except grpc.RpcError as err:
            code = err.code()
            assert code in ACCEPTABLE | {grpc.StatusCode.CANCELLED}, f"{code.name}: {err.details()!r}"
        with lock:
            codes.append(code)

    plans = [(rng.choice(levels), rng.choice([2, 8, 24]), rng.uniform(0.0, 0.06), rng.random() < 0.4)
             for _ in range(80)]
    with RouterClient(tiny_server.target, timeout_s=60) as client, ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(one, client, *plan) for plan in plans]:
            done.result()
        deadline = time.monotonic() + 10
        while core.slots.in_use and time.monotonic() < deadline:
            time.sleep(0.01)
        assert core.slots.in_use == 0, f"{core.slots.in_use} slots still held after every call ended"
        steps = core.engine.stats.decode_steps
        time.sleep(0.3)
        assert core.engine.stats.decode_steps == steps, "a decode loop still runs after every call ended"
        assert client.generate("What is 2 + 3?", max_tokens=2).usage.completion_tokens > 0
    assert codes.count(grpc.StatusCode.CANCELLED) >= 10 and codes.count(grpc.StatusCode.OK) >= 5, codes
