"""The request path, protocol-agnostic: validate, admit, decide, run, record.

The transport calls :meth:`Router.route` and :meth:`Router.generate` with domain objects; the
core raises domain errors (router.errors) and never sees a status code. Model work runs in a
dedicated thread pool so the event loop keeps serving health checks and cheap RPCs while a
search runs; ONNX Runtime releases the GIL while it computes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from router.admission import ComputeSlots
from router.domain import Candidate, Hints, Outcome, Plan, Query, Routing, Timings
from router.engine import CancelToken, Engine, SamplingParams
from router.errors import DeadlineTooShortError, InvalidArgumentError, NotReadyError
from router.policy import PolicySet
from router.policy.decider import Decider, DifficultyPredictor
from router.store import SqliteStore
from router.strategies import Strategy, StrategyContext, get_strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreLimits:
    max_query_chars: int = 16_000
    max_samples: int = 64
    # Generation stops this long before the caller's deadline so the answer can still reach it.
    response_margin_s: float = 0.05


@dataclass
class Progress:
    """Callbacks for streaming; called on the event loop thread."""

    on_text: Callable[[str, int], None] | None = None
    on_sample: Callable[[Candidate], None] | None = None


class Router:
    def __init__(
        self,
        engine: Engine,
        policies: PolicySet,
        slots: ComputeSlots,
        store: SqliteStore,
        executor: ThreadPoolExecutor,
        limits: CoreLimits = CoreLimits(),
        scorer: DifficultyPredictor | None = None,
        policy_loader: Callable[[], PolicySet] | None = None,
    ) -> None:
        self.engine = engine
        self.policy_loader = policy_loader
        self.decider = Decider(policies, scorer, limits.max_samples, accelerated=engine.accelerated)
        self.slots = slots
        self.store = store
        self.executor = executor
        self.limits = limits
        self.min_pass_s = 0.0  # measured by warm_up(): a tiny single pass
        self.accepting = True

    def warm_up(self) -> None:
        """Run one short pass so the first request pays no start-up cost and the deadline floor is known."""
        start = time.perf_counter()
        self.engine.generate("Hi", SamplingParams(max_new_tokens=2))
        self.min_pass_s = time.perf_counter() - start

    # -- decisions ------------------------------------------------------------------------------
    def validate(self, query: Query) -> None:
        if query.text and query.messages:
            raise InvalidArgumentError("query", "set either text or messages, not both")
        if not query.text.strip() and not query.messages:
            raise InvalidArgumentError("query.text", "query is empty: give a question as text or messages")
        size = len(query.text) + sum(len(m.get("content", "")) for m in query.messages)
        if size > self.limits.max_query_chars:
            raise InvalidArgumentError(
                "query.text", f"query has {size} characters; this server takes at most {self.limits.max_query_chars}"
            )
        tokenizer = self.engine.tokenizer
        try:
            rendered = tokenizer.render(query.prompt)
        except InvalidArgumentError as exc:
            field = "query.text" if exc.field == "prompt" else f"query.{exc.field}"
            raise InvalidArgumentError(field, exc.description) from None
        # A byte-level BPE token covers at least one byte, so only long prompts need counting.
        if (
            len(rendered.encode()) >= self.engine.context_length
            and (prompt_tokens := len(tokenizer.encode(rendered))) >= self.engine.context_length
        ):
            raise InvalidArgumentError(
                "query.text",
                f"query is {prompt_tokens} tokens with its chat template; the model's context holds "
                f"{self.engine.context_length}",
            )

    def route(self, query: Query, hints: Hints, *, request_id: str = "", deadline: float | None = None) -> Routing:
        """The decision :meth:`generate` would make, without running it.

        ``deadline`` is absolute ``time.monotonic()``; ``hints.deadline_ms`` counts from now and the
        tighter of the two applies. The experiment unit is ``hints.unit_id``, else ``request_id``.
        """
        return self._route(query, hints, request_id, _tighter(deadline, hints, time.monotonic()))

    def _route(self, query: Query, hints: Hints, request_id: str, deadline: float | None) -> Routing:
        """:meth:`route` with ``deadline`` already combined with ``hints.deadline_ms``."""
        self.validate(query)
        remaining_ms = None
        if deadline is not None:
            remaining_ms = (deadline - time.monotonic() - self.limits.response_margin_s) * 1000
        routing = self.decider.decide(query.question, hints, request_id, remaining_ms)
        if routing.plan.sampling.max_new_tokens > self.engine.context_length:
            raise InvalidArgumentError(
                "hints.sampling.max_new_tokens",
                f"must be <= the model's context ({self.engine.context_length}), "
                f"got {routing.plan.sampling.max_new_tokens}",
            )
        return routing

    @property
    def policies(self) -> PolicySet:
        return self.decider.policies

    @property
    def scorer(self) -> DifficultyPredictor | None:
        return self.decider.scorer

    def set_policies(self, policies: PolicySet) -> None:
        """Serve ``policies`` from now on (refused if a routed policy cannot be served)."""
        self.decider.set_policies(policies)

    def reload_policies(self) -> PolicySet:
        """Re-read the policy source; on any error the policies in force stay and the error is raised."""
        if self.policy_loader is None:
            return self.policies
        self.set_policies(self.policy_loader())
        log.info("policies reloaded from %s: %s", self.policies.source,
                 ", ".join(f"{p.name}@{p.version}" for p in self.policies))
        return self.policies

    # -- generation -----------------------------------------------------------------------------
    async def generate(
        self,
        query: Query,
        hints: Hints,
        *,
        request_id: str = "",
        deadline: float | None = None,
        progress: Progress | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> tuple[Plan, Outcome]:
        """Answer ``query``; ``deadline`` is an absolute ``time.monotonic()``."""
        arrived = time.monotonic()
        if not self.accepting:
            raise NotReadyError("server is shutting down; retry on another replica")
        request_id = request_id or uuid.uuid4().hex
        deadline = _tighter(deadline, hints, arrived)
        routing = self._route(query, hints, request_id, deadline)
        plan = routing.plan
        decided = time.monotonic()
        needed = self.min_pass_s + self.limits.response_margin_s
        if deadline is not None and deadline - decided < needed:
            raise DeadlineTooShortError(
                f"{max(0.0, deadline - decided) * 1000:.0f} ms left cannot fit one pass "
                f"(~{needed * 1000:.0f} ms here); nothing was started"
            )
        strategy = get_strategy(plan.strategy)
        self.slots.acquire(plan.samples)
        try:
            future, cancel = self._start(strategy, query, plan, deadline, progress, on_plan)
        except BaseException:
            self.slots.release(plan.samples)
            raise
        future.add_done_callback(lambda _: self.slots.release(plan.samples))
        # Shadow plans only for admitted requests: a refused one has no decision row to compare with.
        for shadow in routing.shadows:
            self.store.record_shadow(request_id, shadow)
        try:
            outcome, begun = await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.cancel()  # the worker stops within one decode step, then frees its slots
            self.store.record_decision(request_id, plan, None)
            raise
        done = time.monotonic()
        outcome.request_id = request_id
        outcome.model = self.engine.name
        outcome.timings = Timings(
            queue_ms=(begun - decided) * 1000,
            classify_ms=(decided - arrived) * 1000,
            generate_ms=(done - begun) * 1000,
            total_ms=(done - arrived) * 1000,
        )
        if plan.degraded:
            outcome.flags.degraded = True
        if not outcome.flags.truncated_by_deadline:
            self.decider.latency.observe(plan.policy, plan.level, outcome.timings.generate_ms,
                                         prior=plan.estimated_latency_ms)
        self.store.record_decision(request_id, plan, outcome)
        return plan, outcome

    def _start(
        self,
        strategy: Strategy,
        query: Query,
        plan: Plan,
        deadline: float | None,
        progress: Progress | None,
        on_plan: Callable[[Plan], None] | None,
    ) -> tuple[asyncio.Future, CancelToken]:
        """Hand the strategy to a worker thread: a future of (outcome, start time), and its cancel token."""
        if on_plan is not None:
            on_plan(plan)
        cancel = CancelToken()
        loop = asyncio.get_running_loop()
        stop_at = None if deadline is None else deadline - self.limits.response_margin_s
        ctx = StrategyContext(engine=self.engine, cancel=cancel, deadline=stop_at)
        if progress is not None and progress.on_text is not None:
            on_text = progress.on_text
            ctx.on_text = lambda text, n: loop.call_soon_threadsafe(on_text, text, n)
        if progress is not None and progress.on_sample is not None:
            on_sample = progress.on_sample
            ctx.on_sample = lambda c: loop.call_soon_threadsafe(on_sample, c)

        def work() -> tuple[Outcome, float]:
            begun = time.monotonic()
            return strategy.run(query, plan, ctx), begun

        return loop.run_in_executor(self.executor, work), cancel

    async def submit_feedback(self, request_id: str, key: str, score: float | None, label: str, comment: str) -> bool:
        return await asyncio.wrap_future(self.store.add_feedback(request_id, key, score, label, comment))


def _tighter(deadline: float | None, hints: Hints, now: float) -> float | None:
    """The transport's absolute deadline or ``hints.deadline_ms`` counted from ``now``, whichever comes first."""
    if not hints.deadline_ms:
        return deadline
    own = now + hints.deadline_ms / 1000
    return own if deadline is None else min(deadline, own)
