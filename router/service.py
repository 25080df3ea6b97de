"""The gRPC servicer: proto <-> domain, one call into the core per RPC, nothing else.

No decisions here and no status codes: errors are raised as domain errors and mapped by
:mod:`router.interceptors`.
"""

from __future__ import annotations

import asyncio
import hmac
import time

import grpc

from router.core import Progress, Router
from router.domain import Candidate, Hints, Outcome, Plan, Query, SamplingOverrides
from router.errors import NotReadyError, PermissionDeniedError
from router.metrics import Metrics
from router.policy import Arm, PolicySet
from router.v1 import router_pb2 as pb
from router.v1 import router_pb2_grpc as pb_grpc

ADMIN_TOKEN_KEY = "x-router-admin-token"


def query_from_proto(q: pb.Query) -> Query:
    return Query(text=q.text, messages=tuple({"role": m.role, "content": m.content} for m in q.messages))


def hints_from_proto(h: pb.RoutingHints) -> Hints:
    s = h.sampling

    def opt(name: str):  # noqa: ANN202
        return getattr(s, name) if s.HasField(name) else None

    return Hints(
        unit_id=h.unit_id,
        policy=h.policy,
        level=h.level,
        max_tokens=h.budget.max_tokens,
        max_samples=h.budget.max_samples,
        deadline_ms=h.deadline_ms,
        sampling=SamplingOverrides(
            temperature=opt("temperature"), top_p=opt("top_p"), top_k=opt("top_k"), seed=opt("seed"),
            max_new_tokens=opt("max_new_tokens"),
        ),
    )


def decision_to_proto(plan: Plan) -> pb.Decision:
    d = pb.Decision(
        level=plan.level, strategy=plan.strategy, samples=plan.samples, parameters=plan.parameters(),
        policy=plan.policy, policy_version=plan.policy_version, experiment=plan.experiment, arm=plan.arm,
        reason=plan.reason, predicted_success=dict(plan.predicted), estimated_tokens=plan.estimated_tokens,
        estimated_latency_ms=plan.estimated_latency_ms, degraded=plan.degraded,
    )
    if plan.difficulty is not None:
        d.difficulty = plan.difficulty
    return d


def candidate_to_proto(c: Candidate) -> pb.Candidate:
    comp = c.completion
    return pb.Candidate(
        index=comp.index, text=comp.text, answer=c.answer, finish_reason=comp.finish_reason.value,
        completion_tokens=comp.completion_tokens, mean_logprob=comp.mean_logprob, scores=c.scores, chosen=c.chosen,
    )


def response_to_proto(plan: Plan, outcome: Outcome, trace: bool) -> pb.GenerateResponse:
    u, t, f = outcome.usage, outcome.timings, outcome.flags
    resp = pb.GenerateResponse(
        request_id=outcome.request_id, text=outcome.text, answer=outcome.answer, model=outcome.model,
        decision=decision_to_proto(plan),
        usage=pb.Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, samples=u.samples,
                       model_calls=u.model_calls),
        timings=pb.Timings(queue_ms=t.queue_ms, classify_ms=t.classify_ms, generate_ms=t.generate_ms,
                           total_ms=t.total_ms),
        flags=pb.Flags(degraded=f.degraded, truncated_by_deadline=f.truncated_by_deadline,
                       truncated_by_budget=f.truncated_by_budget),
    )
    if trace:
        resp.trace.CopyFrom(pb.Trace(candidates=[candidate_to_proto(c) for c in outcome.candidates],
                                     votes=outcome.votes))
    return resp


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class RouterServicer(pb_grpc.RouterServiceServicer):
    def __init__(self, metrics: Metrics, admin_token: str = "") -> None:
        self.core: Router | None = None  # set once the model is loaded
        self.metrics = metrics
        self.admin_token = admin_token

    def _ready(self) -> Router:
        if self.core is None:
            raise NotReadyError("the router is loading its model; retry shortly")
        return self.core

    def _account(self, plan: Plan, outcome: Outcome) -> None:
        m = self.metrics
        m.decisions.labels(level=plan.level, policy=plan.policy, version=plan.policy_version,
                           experiment=plan.experiment, arm=plan.arm).inc()
        if outcome.flags.degraded:
            m.degraded.inc()
        m.tokens.labels(kind="prompt").inc(outcome.usage.prompt_tokens)
        m.tokens.labels(kind="completion").inc(outcome.usage.completion_tokens)
        m.samples.inc(outcome.usage.samples)

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        core = self._ready()
        plan, outcome = await core.generate(
            query_from_proto(request.query), hints_from_proto(request.hints),
            request_id=request.request_id, deadline=_deadline(context),
        )
        self._account(plan, outcome)
        return response_to_proto(plan, outcome, request.return_trace)

    async def GenerateStream(self, request: pb.GenerateStreamRequest, context: grpc.aio.ServicerContext):
        core = self._ready()
        req = request.request
        events: asyncio.Queue[pb.GenerateStreamResponse] = asyncio.Queue()
        progress = Progress(
            on_text=lambda text, n: events.put_nowait(
                pb.GenerateStreamResponse(token=pb.TokenDelta(text=text, completion_tokens=n))),
            on_sample=lambda c: events.put_nowait(
                pb.GenerateStreamResponse(sample=pb.SampleFinished(candidate=candidate_to_proto(c)))),
        )
        task = asyncio.create_task(core.generate(
            query_from_proto(req.query), hints_from_proto(req.hints), request_id=req.request_id,
            deadline=_deadline(context), progress=progress,
            on_plan=lambda plan: events.put_nowait(pb.GenerateStreamResponse(decision=decision_to_proto(plan))),
        ))
        getter: asyncio.Future | None = None
        try:
            while True:
                getter = asyncio.ensure_future(events.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not events.empty():
                    yield events.get_nowait()
                plan, outcome = task.result()
                self._account(plan, outcome)
                yield pb.GenerateStreamResponse(final=response_to_proto(plan, outcome, req.return_trace))
                return
        finally:
            task.cancel()
            if getter is not None:
                getter.cancel()  # a client cancel lands in the wait above: no Queue.get() left pending

    async def Route(self, request: pb.RouteRequest, context: grpc.aio.ServicerContext) -> pb.RouteResponse:
        core = self._ready()
        start = time.perf_counter()
        routing = core.route(query_from_proto(request.query), hints_from_proto(request.hints),
                             request_id=request.request_id, deadline=_deadline(context))
        plan = routing.plan
        return pb.RouteResponse(request_id=request.request_id, decision=decision_to_proto(plan),
                                decide_ms=(time.perf_counter() - start) * 1000)

    async def SubmitFeedback(
        self, request: pb.SubmitFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitFeedbackResponse:
        core = self._ready()
        created = await core.submit_feedback(
            request.request_id, request.key, request.score if request.HasField("score") else None,
            request.label, request.comment,
        )
        return pb.SubmitFeedbackResponse(created=created)

    async def ListPolicies(self, request: pb.ListPoliciesRequest, context: grpc.aio.ServicerContext):
        return pb.ListPoliciesResponse(**self._policies(self._ready().policies))

    async def ReloadPolicies(self, request: pb.ReloadPoliciesRequest, context: grpc.aio.ServicerContext):
        tokens = [v for k, v in (context.invocation_metadata() or ()) if k == ADMIN_TOKEN_KEY]
        # Exactly one token, compared in constant time: a repeated key must not let a later value win.
        if not self.admin_token or len(tokens) != 1 or not hmac.compare_digest(
            str(tokens[0]).encode(), self.admin_token.encode()
        ):
            raise PermissionDeniedError(
                f"ReloadPolicies needs the admin token in the '{ADMIN_TOKEN_KEY}' metadata "
                "(set server.admin_token / ROUTER_SERVER__ADMIN_TOKEN to enable it)"
            )
        policies = await asyncio.to_thread(self._ready().reload_policies)
        return pb.ReloadPoliciesResponse(**self._policies(policies))

    @staticmethod
    def _policies(policies: PolicySet) -> dict:
        def arms(items: tuple[Arm, ...]) -> list[pb.Arm]:
            return [pb.Arm(name=a.name, policy=a.policy, weight=a.weight) for a in items]

        return {
            "policies": [
                pb.Policy(name=p.name, version=p.version, description=p.description, rule=p.rule.describe(),
                          levels=[lv.name for lv in p.levels], is_default=p.name == policies.default)
                for p in policies
            ],
            "experiments": [
                pb.Experiment(name=e.name, enabled=e.enabled, arms=arms(e.arms), shadow_arms=arms(e.shadow))
                for e in policies.experiments
            ],
            "source": policies.source,
        }
