"""The request path, protocol-agnostic: validate, admit, decide, run, record.

The transport calls :meth:`Router.route` and :meth:`Router.generate` with domain objects; the
core raises domain errors (router.errors) and never sees a status code. Model work runs in a
dedicated thread pool so the event loop keeps serving health checks and cheap RPCs while a
search runs; ONNX Runtime releases the GIL while it computes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import unicodedata
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from router.admission import ComputeSlots
from router.domain import Candidate, Hints, Outcome, Plan, Query, Routing, Timings
from router.engine import CancelToken, Engine, SamplingParams
from router.errors import (
    AlreadyExistsError,
    DeadlineTooShortError,
    InvalidArgumentError,
    NotReadyError,
)
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
    # Caller-chosen strings that are stored with every decision or feedback row.
    max_id_chars: int = 256  # request_id, unit_id
    max_feedback_key_chars: int = 64
    max_feedback_label_chars: int = 256
    max_feedback_comment_chars: int = 4_000


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
        self.slots = slots
        self.store = store
        self.executor = executor
        self.limits = limits
        self._check_servable(policies)
        self.decider = Decider(policies, scorer, limits.max_samples, accelerated=engine.accelerated)
        self.min_pass_s = 0.0  # measured by warm_up(): a tiny single pass
        self.accepting = True
        self._ids_in_flight: set[str] = set()  # caller-chosen request ids now running (event loop only)

    def warm_up(self) -> None:
        """Run one short pass so the first request pays no start-up cost and the deadline floor is known."""
        start = time.perf_counter()
        self.engine.generate("Hi", SamplingParams(max_new_tokens=2))
        self.min_pass_s = time.perf_counter() - start

    # -- decisions ------------------------------------------------------------------------------
    def validate(self, query: Query) -> None:
        if query.text and query.messages:
            raise InvalidArgumentError("query", "set either text or messages, not both")
        where = "query.messages" if query.messages else "query.text"
        tokenizer = self.engine.tokenizer

        def in_query(exc: InvalidArgumentError) -> InvalidArgumentError:
            field = where if exc.field == "prompt" else f"query.{exc.field}"
            return InvalidArgumentError(field, exc.description)

        if query.messages:
            try:
                tokenizer.messages(query.prompt)  # roles and contents, named by index
            except InvalidArgumentError as exc:
                raise in_query(exc) from None
        users = [query.text] if not query.messages else [m["content"] for m in query.messages if m["role"] == "user"]
        if not any(map(_has_visible_text, users)):
            raise InvalidArgumentError(
                where, "query is empty: give a question as text or a user message with visible text"
            )
        size = len(query.text) + sum(len(m.get("content", "")) for m in query.messages)
        if size > self.limits.max_query_chars:
            raise InvalidArgumentError(
                where, f"query has {size} characters; this server takes at most {self.limits.max_query_chars}"
            )
        try:
            rendered = tokenizer.render(query.prompt)
            # A byte-level BPE token covers at least one byte, so only long prompts need counting.
            long = len(rendered.encode()) >= self.engine.context_length
            prompt_tokens = tokenizer.count_prompt_tokens(query.prompt) if long else 0
        except InvalidArgumentError as exc:
            raise in_query(exc) from None
        if prompt_tokens >= self.engine.context_length:
            raise InvalidArgumentError(
                where,
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
        self._check_length("request_id", request_id, self.limits.max_id_chars)
        self._check_length("hints.unit_id", hints.unit_id, self.limits.max_id_chars)
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
        self._check_servable(policies)
        self.decider.set_policies(policies)

    def _check_servable(self, policies: PolicySet) -> None:
        """Warn about levels this server can run only under a caller's sample cap (they are refused
        with FAILED_PRECONDITION otherwise: a configuration matter, not a momentary overload)."""
        most = min(self.slots.capacity, self.limits.max_samples)
        big = [f"{p.name}/{lv.name} ({lv.samples})" for p in policies for lv in p.levels if lv.samples > most]
        if big:
            log.warning("levels taking more samples than this server runs at once (%d: server.compute_slots %d, "
                        "engine.max_samples %d) run only with hints.budget.max_samples: %s", most,
                        self.slots.capacity, self.limits.max_samples, ", ".join(big))

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
        if not request_id:
            request_id = uuid.uuid4().hex
            return await self._generate(query, hints, request_id, arrived, deadline, progress, on_plan)
        self._check_length("request_id", request_id, self.limits.max_id_chars)
        if request_id in self._ids_in_flight:
            raise AlreadyExistsError(_id_taken(request_id, "a request under it is running now"))
        self._ids_in_flight.add(request_id)  # before any await: a concurrent duplicate sees it
        try:
            taken = await asyncio.wrap_future(self.store.request_id_taken(request_id))
            if taken:
                raise AlreadyExistsError(_id_taken(request_id, taken))
            return await self._generate(query, hints, request_id, arrived, deadline, progress, on_plan)
        finally:
            self._ids_in_flight.discard(request_id)  # recorded by now (reads see queued writes), or refused

    async def _generate(
        self,
        query: Query,
        hints: Hints,
        request_id: str,
        arrived: float,
        deadline: float | None,
        progress: Progress | None,
        on_plan: Callable[[Plan], None] | None,
    ) -> tuple[Plan, Outcome]:
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
        if score is not None and not math.isfinite(score):
            raise InvalidArgumentError("score", f"must be a finite number, got {score}")
        if key and not key.strip():
            raise InvalidArgumentError("key", "is blank; give a feedback key, e.g. 'correct'")
        lim = self.limits
        for field, value, most in (
            ("request_id", request_id, lim.max_id_chars), ("key", key, lim.max_feedback_key_chars),
            ("label", label, lim.max_feedback_label_chars), ("comment", comment, lim.max_feedback_comment_chars),
        ):
            self._check_length(field, value, most)
        return await asyncio.wrap_future(self.store.add_feedback(request_id, key, score, label, comment))

    @staticmethod
    def _check_length(field: str, value: str, most: int) -> None:
        if len(value) > most:
            raise InvalidArgumentError(field, f"has {len(value)} characters; at most {most} are kept")


def _id_taken(request_id: str, why: str) -> str:
    shown = request_id if len(request_id) <= 64 else request_id[:61] + "..."
    return (f"request_id '{shown}' is already used: {why}. Request ids are single-use; send a new one, or none "
            "and the server makes one")


def _has_visible_text(text: str) -> bool:
    """Anything besides whitespace, control and format characters (NUL, zero-width space, BOM)."""
    return any(not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf") for ch in text)


def _tighter(deadline: float | None, hints: Hints, now: float) -> float | None:
    """The transport's absolute deadline or ``hints.deadline_ms`` counted from ``now``, whichever comes first."""
    if not hints.deadline_ms:
        return deadline
    own = now + hints.deadline_ms / 1000
    return own if deadline is None else min(deadline, own)
