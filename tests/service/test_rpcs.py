"""Every RPC over real gRPC on loopback, against the tiny exported model."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from router.client import RouterClient
from router.strategies.sampling import beta_stop_probability
from router.v1 import router_pb2 as pb
from router.verifiers.answers import extract_answer

from .conftest import ADMIN_TOKEN, ThreadedServer


def test_generate_returns_answer_decision_usage_and_timings(client: RouterClient, tiny_server: ThreadedServer) -> None:
    r = client.generate("What is the capital of France?")
    assert r.text and r.request_id and r.model == "tiny-llama"
    d = r.decision
    assert (d.level, d.strategy, d.samples, d.policy) == ("single", "single", 1, "fixed")
    assert d.policy_version and d.reason and d.parameters["temperature"] == "0.0"
    assert not d.HasField("difficulty")
    assert r.usage.samples == 1 and r.usage.model_calls == 1
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 24
    assert r.timings.total_ms >= r.timings.generate_ms > 0
    assert not r.HasField("trace")
    expected = tiny_server.core.engine.generate("What is the capital of France?",
                                                 tiny_server.core.policies.get("").level("single").sampling)[0]
    assert r.text == expected.text
    assert r.answer == (extract_answer(r.text) or "")


def test_chat_messages_and_trace(client: RouterClient) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3."}]
    r = client.generate(messages=messages, return_trace=True)
    [cand] = r.trace.candidates
    assert cand.chosen and cand.text == r.text and cand.finish_reason in ("eos", "length", "stop")
    assert cand.completion_tokens == r.usage.completion_tokens


def test_budget_caps_tokens_and_is_flagged(client: RouterClient) -> None:
    r = client.generate("Count the letters in the word banana.", max_tokens=3)
    assert r.usage.completion_tokens <= 3
    assert r.decision.parameters["max_new_tokens"] == "3"
    assert r.flags.truncated_by_budget == (r.usage.completion_tokens == 3)


def test_route_is_the_decision_generate_makes(client: RouterClient) -> None:
    routed = client.route("Which is larger, 19 or 71?", temperature=0.5, seed=3)
    generated = client.generate("Which is larger, 19 or 71?", temperature=0.5, seed=3)
    assert routed.decision == generated.decision
    assert routed.decision.parameters["seed"] == "3"


def test_feedback_is_idempotent_on_request_id_and_key(client: RouterClient) -> None:
    rid = client.generate("Add 17 and 25.").request_id
    assert client.feedback(rid, "correct", score=1.0) is True
    assert client.feedback(rid, "correct", score=0.0) is False
    assert client.feedback(rid, "helpful", label="yes") is True


def test_feedback_for_unknown_request_is_not_found(client: RouterClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.feedback("no-such-request", "correct", score=1.0)
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert "no-such-request" in err.value.details()


def test_list_policies(client: RouterClient) -> None:
    policies = {p.name: p for p in client.list_policies()}
    assert sorted(policies) == ["adaptive", "always_sc", "fixed"]
    policy = policies["fixed"]
    assert policy.is_default and policy.rule == "fixed" and len(policy.version) == 12
    assert policies["adaptive"].rule == "threshold(target=0.5)"
    assert list(policy.levels) == ["single", "escalate", "self_consistency", "best_of_n", "best_of_n_rm",
                                   "self_refine", "step_search"]


def test_reload_policies_is_guarded(client: RouterClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.stub.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=5)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        client.stub.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=5, metadata=[("x-router-admin-token", "wrong")])
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:  # a repeated key must not let the later value win
        client.stub.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=5, metadata=[
            ("x-router-admin-token", "wrong"), ("x-router-admin-token", ADMIN_TOKEN)])
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    ok = client.stub.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=5,
                                    metadata=[("x-router-admin-token", ADMIN_TOKEN)])
    assert [p.name for p in ok.policies] == ["fixed", "adaptive", "always_sc"]
    assert ok.source.endswith("policies.yaml")


def test_stream_sends_decision_then_tokens_then_final(client: RouterClient) -> None:
    events = list(client.generate_stream("Count the letters in the word banana."))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "decision" and kinds[-1] == "final"
    assert set(kinds[1:-1]) == {"token"}
    final = events[-1].final
    assert "".join(e.token.text for e in events if e.HasField("token")) == final.text
    assert events[-2].token.completion_tokens <= final.usage.completion_tokens
    assert events[0].decision == final.decision


def test_a_cancelled_stream_leaves_no_task_behind(client: RouterClient, tiny_server: ThreadedServer) -> None:
    stream = client.generate_stream("Write a long story about a dragon.", max_new_tokens=24)
    assert next(stream).WhichOneof("event") == "decision"
    stream.cancel()
    core = tiny_server.core

    async def waiting_queue_gets() -> list[str]:
        await asyncio.sleep(0.2)  # the server sees the cancel
        return [repr(t) for t in asyncio.all_tasks() if "Queue.get" in repr(t.get_coro())]

    assert tiny_server.run(waiting_queue_gets()) == []
    deadline = time.monotonic() + 10
    while core.slots.in_use and time.monotonic() < deadline:
        time.sleep(0.01)
    assert core.slots.in_use == 0


def test_concurrent_requests_equal_sequential_ones(client: RouterClient) -> None:
    prompts = [("Add 17 and 25.", s) for s in range(6)]
    sequential = [client.generate(p, temperature=1.0, seed=s).text for p, s in prompts]
    with ThreadPoolExecutor(6) as pool:
        concurrent = list(pool.map(lambda ps: client.generate(ps[0], temperature=1.0, seed=ps[1]).text, prompts))
    assert concurrent == sequential
    assert len(set(sequential)) > 1


def test_reflection_lists_the_services(tiny_server: ThreadedServer) -> None:
    with grpc.insecure_channel(tiny_server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [resp] = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                timeout=5))
    names = {s.name for s in resp.list_services_response.service}
    assert {"router.v1.RouterService", "grpc.health.v1.Health"} <= names


def test_metrics_count_rpcs_decisions_and_tokens(client: RouterClient, tiny_server: ThreadedServer) -> None:
    client.generate("Add 2 and 3.")
    with pytest.raises(grpc.RpcError):
        client.generate("")
    body = urllib.request.urlopen(f"http://127.0.0.1:{tiny_server.server.metrics_port}/metrics", timeout=5).read()
    text = body.decode()
    assert 'router_rpcs_total{code="OK",rpc="Generate"}' in text
    assert 'router_rpcs_total{code="INVALID_ARGUMENT",rpc="Generate"}' in text
    version = client.route("x").decision.policy_version
    assert f'router_decisions_total{{arm="",experiment="",level="single",policy="fixed",version="{version}"}}' in text
    assert 'router_tokens_total{kind="completion"}' in text
    assert "router_compute_slots_in_use 0.0" in text
    assert "router_rpc_latency_seconds_bucket" in text


def test_multi_sample_level_takes_its_slots_and_reports_votes(client: RouterClient) -> None:
    r = client.generate("Add 17 and 25.", level="self_consistency", max_samples=4, return_trace=True)
    assert r.decision.level == "self_consistency" and r.decision.samples == 4
    assert r.decision.parameters["stop_rule"] == "beta"
    assert 1 <= r.usage.samples <= 4 == r.decision.samples
    assert len(r.trace.candidates) == r.usage.samples
    assert sum(r.trace.votes.values()) == sum(1 for c in r.trace.candidates if c.answer)
    assert sum(c.chosen for c in r.trace.candidates) == 1
    counts = sorted(r.trace.votes.values(), reverse=True) + [0, 0]
    sure = beta_stop_probability(counts[0], counts[1]) >= 0.95
    assert r.flags.truncated_by_budget == (not sure or any(c.finish_reason == "length" for c in r.trace.candidates))


def test_best_of_n_trace_carries_verifier_scores(client: RouterClient) -> None:
    r = client.generate("Count the letters in the word banana.", level="best_of_n", max_samples=3, return_trace=True)
    assert len(r.trace.candidates) == 3
    assert all(0.0 <= c.scores["self_likelihood"] <= 1.0 for c in r.trace.candidates)


def test_stream_of_a_multi_sample_level_reports_each_sample(client: RouterClient) -> None:
    events = list(client.generate_stream("Add 17 and 25.", level="best_of_n", max_samples=3, return_trace=True))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["decision", "sample", "sample", "sample", "final"]
    streamed = [(e.sample.candidate.index, e.sample.candidate.text) for e in events[1:4]]
    assert streamed == [(c.index, c.text) for c in events[-1].final.trace.candidates]


def test_step_search_level_over_grpc(client: RouterClient) -> None:
    r = client.generate("Add 17 and 25.", level="step_search", return_trace=True)
    assert r.decision.strategy == "step_search" and r.decision.parameters["mode"] == "beam"
    assert 1 <= r.usage.samples <= 12  # expansions, never past the budget
    assert any(c.chosen and c.text == r.text for c in r.trace.candidates)
