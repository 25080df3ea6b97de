"""Routing over real gRPC: classifier-driven decisions, Route == Generate, experiments with shadow
arms, and hot reload of the policy file (a broken file keeps the old policies serving)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from router.client import RouterClient
from router.domain import Outcome
from router.policy import parse_policies
from router.strategies import register
from router.strategies.single import SinglePass
from router.v1 import router_pb2 as pb
from tests.service.conftest import ADMIN_TOKEN, TEST_POLICIES, ThreadedServer, make_settings

QUESTIONS = ["What is 7 * 8?", "Which is larger, 57 or 50?", "What is 93 - 48?",
             'How many times does the letter "s" appear in the word "mississippi"?']


class _Probe(SinglePass):
    """A single pass that counts its runs: shadow arms must never reach it."""

    name = "probe-for-test"
    runs = 0

    def run(self, query, plan, ctx) -> Outcome:  # noqa: ANN001
        type(self).runs += 1
        return super().run(query, plan, ctx)


def _policy_file(tmp: Path, experiment: bool) -> Path:
    raw = yaml.safe_load(TEST_POLICIES.read_text())
    raw["default_policy"] = "adaptive"
    raw["policies"].append({"name": "probe", "rule": {"kind": "fixed"},
                            "levels": [{"name": "single", "strategy": _Probe.name}]})
    if experiment:
        raw["experiments"] = [{
            "name": "ab", "salt": "t1",
            "arms": [{"name": "control", "policy": "fixed"}, {"name": "treatment", "policy": "adaptive"}],
            "shadow": [{"name": "shadow-probe", "policy": "probe"}, {"name": "shadow-sc", "policy": "always_sc"}],
        }]
    path = tmp / "policies.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def routed(tiny_dir: Path, tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    register(_Probe())
    tmp = tmp_path_factory.mktemp("routed")
    srv = ThreadedServer(make_settings(tiny_dir.parent, tiny_dir.name, tmp, policy_file=_policy_file(tmp, True),
                                       default_max_new_tokens=16))
    yield srv
    srv.close()


@pytest.fixture
def rclient(routed: ThreadedServer) -> Iterator[RouterClient]:
    with RouterClient(routed.target, timeout_s=60) as c:
        yield c


def test_route_and_generate_make_the_same_decision(rclient: RouterClient) -> None:
    for i, q in enumerate(QUESTIONS):
        hints = {"policy": "adaptive", "unit_id": f"u{i}", "max_samples": 8}
        routed = rclient.route(q, **hints).decision
        answered = rclient.generate(q, **hints).decision
        for field in ("level", "strategy", "samples", "policy", "policy_version", "reason", "difficulty"):
            assert getattr(routed, field) == getattr(answered, field), (q, field)
        assert dict(routed.predicted_success) == dict(answered.predicted_success)
        assert set(routed.predicted_success) == {"single", "self_consistency", "best_of_n_rm"}
        assert 0 <= routed.difficulty <= 1
        assert routed.difficulty == pytest.approx(1 - routed.predicted_success["single"], abs=1e-6)


def test_the_classifier_changes_the_choice_with_the_target(rclient: RouterClient, routed: ThreadedServer) -> None:
    core = routed.core
    success = core.scorer.predict(QUESTIONS[0])
    ordered = sorted(success.values())
    original = core.policies
    raw = yaml.safe_load(core.policies.source and Path(core.policies.source).read_text())
    try:
        for target, expect_cheapest in ((0.0, True), (min(1.0, ordered[-1] + 1e-3), False)):
            raw["policies"][1]["rule"] = {"kind": "threshold", "target": float(target)}
            core.set_policies(parse_policies(raw, "inline"))
            decision = rclient.route(QUESTIONS[0], policy="adaptive").decision
            if expect_cheapest:
                assert decision.level == "single"
            else:  # nobody clears the target: the most likely level
                assert decision.level == max(success, key=success.get)
                assert "no level predicted to reach" in decision.reason
    finally:
        core.set_policies(original)


def test_deadline_hint_bounds_route_and_generate_alike(rclient: RouterClient) -> None:
    q = QUESTIONS[1]
    # adaptive's priors: single 100 ms, self_consistency 400 ms, best_of_n_rm 500 ms
    tight = rclient.route(q, policy="adaptive", deadline_ms=200).decision
    assert tight.level == "single"
    answered = rclient.generate(q, policy="adaptive", deadline_ms=200 + 5000).decision
    assert answered.estimated_latency_ms > 0


def test_route_heeds_the_callers_grpc_deadline(rclient: RouterClient, routed: ThreadedServer) -> None:
    core = routed.core
    original = core.policies
    raw = yaml.safe_load(Path(core.policies.source).read_text())
    # Target 0 takes the cheapest level by cost_tokens: self_consistency here (400 ms prior), single
    # (100 ms) once a deadline rules it out. A fresh policy name, so no learned latencies apply.
    levels = [{"name": "single", "strategy": "single", "samples": 1, "cost_tokens": 100, "latency_ms": 100},
              {"name": "self_consistency", "strategy": "self_consistency", "samples": 8, "cost_tokens": 1,
               "latency_ms": 400, "sampling": {"temperature": 0.7, "seed": 0}}]
    raw["policies"].append({"name": "deadline-probe", "rule": {"kind": "threshold", "target": 0.0}, "levels": levels})
    try:
        core.set_policies(parse_policies(raw, "inline"))
        assert rclient.route(QUESTIONS[0], policy="deadline-probe", timeout_s=30).decision.level == "self_consistency"
        tight = rclient.route(QUESTIONS[0], policy="deadline-probe", timeout_s=0.3).decision
        assert tight.level == "single"
    finally:
        core.set_policies(original)


def test_units_stick_to_arms_and_arms_reach_response_store_and_metrics(
    rclient: RouterClient, routed: ThreadedServer
) -> None:
    experiment = routed.core.policies.active_experiment
    seen = {}
    for i in range(12):
        unit = f"user-{i}"
        resp = rclient.generate(QUESTIONS[i % 4], unit_id=unit)
        d = resp.decision
        arm = experiment.assign(unit)
        assert (d.experiment, d.arm, d.policy) == ("ab", arm.name, arm.policy)
        assert d.policy_version == routed.core.policies.get(arm.policy).version
        again = rclient.route(QUESTIONS[0], unit_id=unit).decision
        assert again.arm == d.arm
        seen[arm.name] = resp.request_id
    assert set(seen) == {"control", "treatment"}
    stored = _wait_for_decision(routed, seen["treatment"])
    assert stored["plan"]["arm"] == "treatment" and stored["plan"]["experiment"] == "ab"
    text = urllib.request.urlopen(f"http://127.0.0.1:{routed.server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'experiment="ab"' in text and 'arm="treatment"' in text and 'arm="control"' in text


def test_shadow_arms_are_logged_and_never_run(rclient: RouterClient, routed: ThreadedServer) -> None:
    experiment = routed.core.policies.active_experiment
    unit = next(f"s{i}" for i in range(100) if experiment.assign(f"s{i}").name == "control")
    before = _Probe.runs
    resp = rclient.generate(QUESTIONS[2], unit_id=unit)
    assert resp.decision.arm == "control" and resp.decision.level == "single"
    assert _Probe.runs == before
    # the control arm's single pass is all that ran: always_sc's 8 samples would show in usage
    assert (resp.usage.samples, resp.usage.model_calls) == (1, 1)
    shadows = _wait_for_shadows(routed, resp.request_id)
    assert {s["arm"] for s in shadows} == {"shadow-probe", "shadow-sc"}
    assert {s["level"] for s in shadows} == {"single", "self_consistency"}


def test_a_refused_request_logs_no_shadow_decisions(rclient: RouterClient, routed: ThreadedServer) -> None:
    experiment = routed.core.policies.active_experiment
    unit = next(f"r{i}" for i in range(100) if experiment.assign(f"r{i}").name == "control")
    with pytest.raises(grpc.RpcError) as err:  # 1 ms cannot fit a pass: refused before anything starts
        rclient.generate(QUESTIONS[1], unit_id=unit, deadline_ms=1, request_id="refused-1")
    assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    answered = rclient.generate(QUESTIONS[1], unit_id=unit, request_id="answered-1")
    assert routed.core.store.flush(timeout=10)
    assert routed.core.store.shadow_decisions("refused-1") == []
    assert routed.core.store.decision("refused-1") is None
    assert len(routed.core.store.shadow_decisions(answered.request_id)) == 2


def test_a_forced_level_opts_out_of_the_experiment_for_every_unit(
    rclient: RouterClient, routed: ThreadedServer
) -> None:
    experiment = routed.core.policies.active_experiment
    units = [f"f{i}" for i in range(8)]
    assert {experiment.assign(u).name for u in units} == {"control", "treatment"}
    default = routed.core.policies.get("")
    for unit in units:
        d = rclient.route(QUESTIONS[0], unit_id=unit, level="self_consistency").decision
        assert (d.level, d.policy, d.experiment, d.arm) == ("self_consistency", default.name, "", "")


def test_a_level_larger_than_the_server_is_refused_as_a_precondition_not_overload(
    rclient: RouterClient, routed: ThreadedServer
) -> None:
    core = routed.core
    original = core.policies
    raw = yaml.safe_load(Path(original.source).read_text())
    raw["policies"][1]["levels"][1]["samples"] = core.slots.capacity + 1
    core.set_policies(parse_policies(raw, original.source))
    try:
        with pytest.raises(grpc.RpcError) as err:
            rclient.generate(QUESTIONS[0], policy="adaptive", level="self_consistency")
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "max_samples" in err.value.details() and "compute_slots" in err.value.details()
        capped = rclient.generate(QUESTIONS[0], policy="adaptive", level="self_consistency",
                                  max_samples=core.slots.capacity)
        assert capped.decision.samples == core.slots.capacity
    finally:
        core.set_policies(original)
    assert core.slots.in_use == 0


def test_reload_swaps_policies_and_a_broken_file_keeps_the_old_ones(
    rclient: RouterClient, routed: ThreadedServer
) -> None:
    path = Path(routed.core.policies.source)
    original_text = path.read_text()
    meta = [("x-router-admin-token", ADMIN_TOKEN)]
    before = {p.name: p.version for p in rclient.list_policies()}
    try:
        raw = yaml.safe_load(original_text)
        raw["policies"][1]["rule"]["target"] = 0.9
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        reloaded = rclient.stub.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=10, metadata=meta)
        after = {p.name: p.version for p in reloaded.policies}
        assert after["adaptive"] != before["adaptive"] and after["fixed"] == before["fixed"]
        assert [e.name for e in reloaded.experiments] == ["ab"]

        path.write_text(original_text.replace("strategy: self_consistency", "strategy: warp-drive", 1))
        with pytest.raises(grpc.RpcError) as err:
            rclient.stub.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=10, metadata=meta)
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "warp-drive" in err.value.details() and str(path) in err.value.details()
        assert {p.name: p.version for p in rclient.list_policies()} == after  # still the last good ones
        assert rclient.generate(QUESTIONS[0], policy="adaptive").decision.policy_version == after["adaptive"]
    finally:
        path.write_text(original_text)
        rclient.stub.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=10, metadata=meta)
    assert {p.name: p.version for p in rclient.list_policies()} == before


def _wait_for_decision(srv: ThreadedServer, request_id: str) -> dict:
    import time

    for _ in range(100):
        row = srv.core.store.decision(request_id)
        if row is not None and row.get("outcome"):
            return row
        time.sleep(0.05)
    raise AssertionError(f"decision {request_id} never reached the store")


def _wait_for_shadows(srv: ThreadedServer, request_id: str) -> list[dict]:
    import time

    for _ in range(100):
        rows = srv.core.store.shadow_decisions(request_id)
        if len(rows) >= 2:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"shadow decisions of {request_id} never reached the store")


def test_policy_reload_command_prints_the_policies_and_experiments_in_force(
    routed: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from router.cli import main

    assert main(["policy", "reload", "--target", routed.target, "--token", "wrong"]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    assert main(["policy", "reload", "--target", routed.target, "--token", ADMIN_TOKEN]) == 0
    out = capsys.readouterr().out
    assert "reloaded from" in out and "adaptive@" in out
    assert "experiment ab (enabled): control=fixed (1), treatment=adaptive (1); shadow: shadow-probe, shadow-sc" in out
