"""Policy files (YAML): policies, the default one, and experiments, validated as a whole.

A file either loads completely or is refused with every problem named (file, path, what to
fix); the caller keeps serving whatever it had before. ``version`` of each policy is a hash of
its content, so a reload that changes a policy changes its version and an unchanged one keeps it.

    default_policy: adaptive
    policies:
      - name: adaptive
        rule: {kind: threshold, target: 0.5}   # or {kind: utility, lambda: 0.5} or {kind: fixed}
        default_level: single
        cpu_max_level: ""                      # without an accelerator, never choose above this
        levels:
          - {name: single, strategy: single, samples: 1, cost_tokens: 60, latency_ms: 2000,
             sampling: {temperature: 0, max_new_tokens: 160}}
    experiments:
      - name: adaptive-vs-greedy
        enabled: true
        salt: "2026-11"
        arms: [{name: control, policy: greedy, weight: 1}, {name: treatment, policy: adaptive, weight: 1}]
        shadow: [{name: shadow-sc, policy: always-sc}]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.engine.types import SamplingParams
from router.errors import InvalidArgumentError, PolicyFileError
from router.policy.experiments import Arm, Experiment
from router.policy.ladder import LevelSpec, Policy, PolicySet, Rule

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sampling(_Strict):
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = Field(default=0, strict=True)
    max_new_tokens: int | None = Field(default=None, strict=True)
    seed: int | None = Field(default=None, strict=True)
    stop: list[str] = Field(default_factory=list)


class _Level(_Strict):
    name: str = Field(min_length=1)
    strategy: str = Field(min_length=1)
    samples: int = Field(default=1, ge=1, strict=True)  # strict: `true` or "8" are not sample counts
    description: str = ""
    sampling: _Sampling = Field(default_factory=_Sampling)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    cost_tokens: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    latency_ms: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class _Rule(_Strict):
    kind: Literal["fixed", "threshold", "utility"] = "fixed"
    target: float = Field(default=0.5, ge=0, le=1)
    lambda_: float = Field(default=0.0, ge=0, alias="lambda")


class _Policy(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    rule: _Rule = Field(default_factory=_Rule)
    default_level: str = ""
    cpu_max_level: str = ""
    levels: list[_Level] = Field(min_length=1)


class _Arm(_Strict):
    name: str = Field(min_length=1)
    policy: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class _Experiment(_Strict):
    name: str = Field(min_length=1)
    enabled: bool = True
    salt: str = ""
    arms: list[_Arm] = Field(min_length=1)
    shadow: list[_Arm] = Field(default_factory=list)


class _File(_Strict):
    default_policy: str
    policies: list[_Policy] = Field(min_length=1)
    experiments: list[_Experiment] = Field(default_factory=list)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_policies(path: Path, default_max_new_tokens: int = 256) -> PolicySet:
    """Read and validate a policy file; :class:`PolicyFileError` lists every problem found."""
    try:
        raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)
    except OSError as exc:
        raise PolicyFileError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"policy file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"policy file {path} is not valid YAML: {exc}") from None
    return parse_policies(raw, str(path), default_max_new_tokens)


def parse_policies(raw: Any, source: str, default_max_new_tokens: int = 256) -> PolicySet:
    if not isinstance(raw, dict):
        raise PolicyFileError(
            f"policy file {source} is invalid: its top level must be a mapping with default_policy and policies "
            f"(and optionally experiments), got {type(raw).__name__ if raw is not None else 'an empty file'}"
        )
    try:
        spec = _File.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PolicyFileError(f"policy file {source} is invalid: {problems}") from None
    problems: list[str] = []
    policies = [_policy(p, default_max_new_tokens, problems) for p in spec.policies]
    names = [p.name for p in spec.policies]
    if len(set(names)) != len(names):
        problems.append(f"policy names must be unique, got {names}")
    if spec.default_policy not in names:
        problems.append(f"default_policy '{spec.default_policy}' is not one of the policies {names}")
    experiments = [_experiment(e, set(names), problems) for e in spec.experiments]
    if sum(e.enabled for e in spec.experiments) > 1:
        problems.append("at most one experiment may be enabled at a time")
    if problems:
        raise PolicyFileError(f"policy file {source} is invalid: " + "; ".join(problems))
    return PolicySet(policies, spec.default_policy, experiments, source=source)


def _policy(p: _Policy, default_max_new_tokens: int, problems: list[str]) -> Policy:
    from router.strategies import get_strategy, strategy_names  # strategies import the policy package's users

    where = f"policy '{p.name}'"
    levels = []
    for lv in p.levels:
        s = lv.sampling
        sampling = SamplingParams(
            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, stop=tuple(s.stop), seed=s.seed,
            max_new_tokens=default_max_new_tokens if s.max_new_tokens is None else s.max_new_tokens,
        )
        try:
            sampling.validate()
        except InvalidArgumentError as exc:
            problems.append(f"{where} level '{lv.name}': sampling.{exc.field}: {exc.description}")
        if lv.strategy not in strategy_names():
            problems.append(f"{where} level '{lv.name}': unknown strategy '{lv.strategy}'; known: {strategy_names()}")
        else:
            problems += [f"{where} level '{lv.name}': options.{problem}"
                         for problem in get_strategy(lv.strategy).check_options(lv.options)]
        levels.append(LevelSpec(
            name=lv.name, strategy=lv.strategy, samples=lv.samples, sampling=sampling, description=lv.description,
            options=tuple(lv.options.items()), cost_tokens=lv.cost_tokens, latency_ms=lv.latency_ms,
        ))
    names = [lv.name for lv in levels]
    if len(set(names)) != len(names):
        problems.append(f"{where}: level names must be unique, got {names}")
    default_level = p.default_level or names[0]
    for field, value in (("default_level", default_level), ("cpu_max_level", p.cpu_max_level)):
        if value and value not in names:
            problems.append(f"{where}: {field} '{value}' is not one of its levels {names}")
    if p.rule.kind == "utility" and math.isnan(p.rule.lambda_):
        problems.append(f"{where}: rule.lambda must be a number >= 0 (.inf allowed)")
    if p.rule.kind != "fixed" and not any(lv.cost_tokens > 0 for lv in levels):
        problems.append(f"{where}: a '{p.rule.kind}' rule needs cost_tokens on its levels")
    rule = Rule(kind=p.rule.kind, target=p.rule.target, lam=p.rule.lambda_)
    return Policy(name=p.name, levels=tuple(levels), default_level=default_level, description=p.description,
                  rule=rule, cpu_max_level=p.cpu_max_level)


def _experiment(e: _Experiment, policies: set[str], problems: list[str]) -> Experiment:
    where = f"experiment '{e.name}'"
    arms = [Arm(a.name, a.policy, a.weight) for a in e.arms]
    shadow = [Arm(a.name, a.policy, a.weight) for a in e.shadow]
    for arm in arms + shadow:
        if arm.policy not in policies:
            problems.append(f"{where} arm '{arm.name}': unknown policy '{arm.policy}'")
    arm_names = [a.name for a in arms + shadow]
    if len(set(arm_names)) != len(arm_names):
        problems.append(f"{where}: arm names must be unique, got {arm_names}")
    return Experiment(name=e.name, arms=tuple(arms), salt=e.salt, shadow=tuple(shadow), enabled=e.enabled)
