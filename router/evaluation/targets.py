"""Where ``router eval`` gets its answers: this process, or a running server through the client.

Both answer one question either at a forced level of a policy's ladder or as the policy itself
decides, and report the same facts: the response text, the decision (level, difficulty,
predicted success, policy version) and what it cost. In process, a forced level is planned by the
policy exactly as the server plans it (``Policy.plan`` with the level hint) and a policy's own
choice goes through the server's :class:`~router.policy.decider.Decider` with the difficulty
classifier; the strategy then runs in this thread. Latency is the strategy's run in process, and
the server's ``timings.total_ms`` (decision included, transport excluded) through the client.

Each also says, before any question, the settings that change its answers (:meth:`Target.settings`):
the model, the cap on new tokens and the policy's version (a hash of its content). A server says
its model with its first answer. And it says what each forced level will run (:meth:`Target.specs`:
a hash of the plan's strategy, samples, sampling and options, from a dry run on a server), which
is what a resumed results file must match per level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from router.client import RouterClient
from router.domain import Hints, Outcome, Plan, SamplingOverrides
from router.engine import Engine
from router.evaluation.runner import run_spec
from router.policy.decider import Decider, DifficultyPredictor
from router.policy.ladder import PolicySet, RouteFacts


@dataclass(frozen=True)
class Answered:
    """One question answered once, whichever target answered it."""

    text: str
    decision_level: str
    difficulty: float | None
    predicted: dict[str, float]
    policy: str  # name@version
    prompt_tokens: int
    completion_tokens: int
    samples: int
    model_calls: int
    latency_ms: float
    truncated: bool
    reason: str = ""
    model: str = ""  # the model's name
    max_new_tokens: int = 0  # the cap it was asked with (0: the level's own)
    spec: str = ""  # what ran (router.evaluation.runner.LevelResult.spec)


class LevelError(Exception):
    """A level that cannot run any question as configured (a bad option, an unknown verifier)."""


CONFIG_FIELDS = ("strategy", "verifier")  # InvalidArgumentError fields (besides options.*) that a level sets


class Target(Protocol):
    """Answers a question at a forced ``level`` of ``policy``'s ladder, or as ``policy`` decides (level "")."""

    name: str

    def check(self, policy: str, levels: list[str], route: bool = False) -> str:
        """The policy's name ("" is the default one); ValueError names what is unknown or missing, before any
        work (``route``: the policy's own choice will run too)."""

    def settings(self, policy: str) -> dict[str, Any]:
        """What changes answers, as known before any question: ``model``, ``max_new_tokens`` and
        ``policy`` (name@version) of ``policy``, a name :meth:`check` returned. A key may be missing
        (a server's model)."""

    def specs(self, policy: str, runs: list[tuple[str, str]]) -> dict[str, str]:
        """What each (row label, forced level) of ``runs`` will run, before any question: the
        ``spec`` its rows will record (a forced level's plan is the same for every question)."""

    def answer(self, text: str, *, policy: str, level: str) -> Answered:
        """The answer; LevelError when the level cannot run as configured."""


def _predicted(values: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in sorted(values.items())}


class InProcess:
    """The engine in this process, planned by ``policies`` (and ``scorer`` for a policy's own choice)."""

    name = "in-process"

    def __init__(self, engine: Engine, policies: PolicySet, scorer: DifficultyPredictor | None = None,
                 max_new_tokens: int = 0) -> None:
        self.engine = engine
        self.policies = policies
        self.scorer = scorer
        self.max_new_tokens = max_new_tokens
        self.accelerated = engine.accelerated
        self._decider: Decider | None = None
        self._options_checked: set[tuple[str, str]] = set()

    def _hints(self, policy: str, level: str) -> Hints:
        return Hints(policy=policy, level=level,
                     sampling=SamplingOverrides(max_new_tokens=self.max_new_tokens or None))

    def check(self, policy: str, levels: list[str], route: bool = False) -> str:
        from router.errors import InvalidArgumentError, PolicyFileError

        try:
            chosen = self.policies.get(policy)
            for level in levels:
                chosen.level(level)
            if route and chosen.routed:
                if self.scorer is None:
                    raise ValueError(f"policy '{chosen.name}' routes by predicted success, and no difficulty "
                                     "classifier is loaded (settings.difficulty_dir)")
                self.decider()
        except InvalidArgumentError as exc:
            raise ValueError(exc.description) from None
        except PolicyFileError as exc:
            raise ValueError(str(exc)) from None
        return chosen.name

    def settings(self, policy: str) -> dict[str, Any]:
        chosen = self.policies.get(policy)
        return {"model": self.engine.name, "max_new_tokens": self.max_new_tokens,
                "policy": f"{chosen.name}@{chosen.version}"}

    def specs(self, policy: str, runs: list[tuple[str, str]]) -> dict[str, str]:
        chosen = self.policies.get(policy)  # a policy's own choice: its version, as the rows record it
        return {label: _plan_spec(self.plan("", policy, level), forced=True) if level
                else f"{chosen.name}@{chosen.version}" for label, level in runs}

    def decider(self) -> Decider:
        """The server's decider over these policies (needs the classifier when a policy is routed)."""
        if self._decider is None:
            self._decider = Decider(self.policies, self.scorer, self.engine.max_samples, accelerated=self.accelerated)
        return self._decider

    def plan(self, text: str, policy: str, level: str) -> Plan:
        hints = self._hints(policy, level)
        if level or not self.policies.get(policy).routed:
            facts = RouteFacts(accelerated=self.accelerated)
            return self.policies.get(policy).plan(hints, self.engine.max_samples, facts)
        return self.decider().decide(text, hints).plan

    def answer(self, text: str, *, policy: str, level: str) -> Answered:
        from router.errors import InvalidArgumentError
        from router.evaluation.runner import run_plan

        plan = self.plan(text, policy, level)
        self._check_options(plan)
        try:
            outcome, latency_ms = run_plan(self.engine, plan, text)
        except InvalidArgumentError as exc:
            if exc.field.startswith("options.") or exc.field in CONFIG_FIELDS:
                raise LevelError(_level_problem(plan, exc)) from exc
            raise
        return _from_outcome(plan, outcome, latency_ms, self.engine.name, self.max_new_tokens, forced=bool(level))

    def _check_options(self, plan: Plan) -> None:
        """The check the policy loader makes, once per level, for policy sets built in code: a
        strategy's own ValueError is then a bug to see, not a configuration to blame."""
        from router.strategies import get_strategy

        key = (plan.policy, plan.level)
        if key in self._options_checked:
            return
        if problems := get_strategy(plan.strategy).check_options(plan.options):
            raise LevelError(f"{_cannot_run(plan)} options: {'; '.join(problems)}")
        self._options_checked.add(key)


def _cannot_run(plan: Plan) -> str:
    return f"level '{plan.level}' (strategy {plan.strategy}) of policy '{plan.policy}' cannot run with its"


def _level_problem(plan: Plan, exc: Exception) -> str:
    """Which level failed and, where the error quotes one of its option values, which option."""
    message = str(exc)
    suspects = [f"'{k}: {v}'" for k, v in plan.options.items() if repr(v) in message or repr(str(v)) in message]
    named = f"option {suspects[0]}" if len(suspects) == 1 else f"options {dict(plan.options)}"
    return f"{_cannot_run(plan)} {named}: {type(exc).__name__}: {message}"


def _plan_spec(plan: Plan, forced: bool) -> str:
    """A row's ``spec``: what a forced level runs, or the version of the policy that chose."""
    if forced:
        return run_spec(plan.level, plan.strategy, plan.samples, plan.parameters())
    return f"{plan.policy}@{plan.policy_version}"


def _decision_spec(d: Any, forced: bool) -> str:
    """:func:`_plan_spec` from a server's ``Decision``."""
    return run_spec(d.level, d.strategy, d.samples, d.parameters) if forced else f"{d.policy}@{d.policy_version}"


def _from_outcome(plan: Plan, outcome: Outcome, latency_ms: float, model: str, max_new_tokens: int,
                  forced: bool) -> Answered:
    u, f = outcome.usage, outcome.flags
    return Answered(
        text=outcome.text, decision_level=plan.level,
        difficulty=None if plan.difficulty is None else round(plan.difficulty, 4),
        predicted=_predicted(dict(plan.predicted)), policy=f"{plan.policy}@{plan.policy_version}",
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, samples=u.samples,
        model_calls=u.model_calls, latency_ms=round(latency_ms, 1),
        truncated=f.truncated_by_budget or f.truncated_by_deadline, reason=plan.reason, model=model,
        max_new_tokens=max_new_tokens, spec=_plan_spec(plan, forced),
    )


class Remote:
    """A running server, through :class:`router.client.RouterClient`."""

    def __init__(self, client: RouterClient, max_new_tokens: int = 0) -> None:
        self.client = client
        self.max_new_tokens = max_new_tokens
        self.name = client.target

    def check(self, policy: str, levels: list[str], route: bool = False) -> str:
        policies = {p.name: p for p in self.client.list_policies()}
        name = policy or next((p.name for p in policies.values() if p.is_default), "")
        if name not in policies:
            raise ValueError(f"{self.name} has no policy '{policy}'; it serves: {', '.join(sorted(policies))}")
        known = list(policies[name].levels)
        for level in levels:
            if level not in known:
                raise ValueError(f"unknown level '{level}' for policy '{name}' on {self.name}; known: "
                                 f"{', '.join(known)}")
        if self.max_new_tokens:  # a dry run checks the cap against the server's model, before any question
            import grpc

            try:
                self.client.route("What is 1 + 1?", policy=name, level=levels[0] if levels else "",
                                  max_new_tokens=self.max_new_tokens)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:  # type: ignore[attr-defined]
                    raise
                raise ValueError(f"{self.name} refuses --max-new-tokens {self.max_new_tokens}: "
                                 f"{exc.details()}") from None  # type: ignore[attr-defined]
        return name

    def settings(self, policy: str) -> dict[str, Any]:
        versions = {p.name: p.version for p in self.client.list_policies()}
        return {"max_new_tokens": self.max_new_tokens, "policy": f"{policy}@{versions.get(policy, '')}"}

    def specs(self, policy: str, runs: list[tuple[str, str]]) -> dict[str, str]:
        """From a dry run (``Route``) of each: the decision the server will run under."""
        return {label: _decision_spec(self.client.route("What is 1 + 1?", level=level, policy=policy,
                                                         **self._cap()).decision, forced=bool(level))
                for label, level in runs}

    def _cap(self) -> dict[str, int]:
        return {"max_new_tokens": self.max_new_tokens} if self.max_new_tokens else {}

    def answer(self, text: str, *, policy: str, level: str) -> Answered:
        r = self.client.generate(text, level=level, policy=policy, **self._cap())
        d, u = r.decision, r.usage
        return Answered(
            text=r.text, decision_level=d.level,
            difficulty=round(d.difficulty, 4) if d.HasField("difficulty") else None,
            predicted=_predicted(dict(d.predicted_success)), policy=f"{d.policy}@{d.policy_version}",
            prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, samples=u.samples,
            model_calls=u.model_calls, latency_ms=round(r.timings.total_ms, 1),
            truncated=r.flags.truncated_by_budget or r.flags.truncated_by_deadline, reason=d.reason, model=r.model,
            max_new_tokens=self.max_new_tokens,
            spec=_decision_spec(d, forced=bool(level)),
        )
