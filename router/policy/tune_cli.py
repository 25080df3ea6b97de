"""`router tune`: choose a routed policy's setting from eval results, and report it on questions it never saw.

    router tune --results router/difficulty/data/labels.jsonl --oof 5 --max-tokens-x single:2 \\
        --write-policy var/tuned.yaml --png var/frontier.png
    router tune --results var/eval/a.jsonl --results var/eval/b.jsonl --rule utility --min-accuracy 0.3 --json

Input: ``LevelResult`` rows (``router eval`` or ``router difficulty labels``) of forced levels; rows of
a policy's own choice (level ``policy:NAME``) are not tuned on but are drawn as measured points. The
policy (``--policy`` of ``--policy-file``, default the file's default policy) routes the levels it has
that both appear in the results and are predicted by the classifier; a question counts only when it
has a row for every one of them. Level costs are the fit split's mean completion tokens. A line that
is not a usable row (torn, foreign, not UTF-8, or a value of the wrong type: ``correct`` must be true
or false, ``completion_tokens`` a whole number >= 0) is skipped and named (``PATH:LINE``) in the
notes; a (question, level) row that an earlier file already has is not used, with a warning.

1. Predictions on the fit split: the committed classifier on the question text, or with ``--oof K``
   K-fold out-of-fold predictions of fresh classifiers with the committed card's hyperparameters
   (use it when the fit split is the classifier's own training split: its in-sample predictions are
   flatter than real ones). Report splits are always scored by the committed classifier, and any
   report question it was trained on (same id or same text) is left out and counted.
2. The rule (``--rule threshold``: target 0.00 ... 1.00; ``--rule utility``: lambda 0, a log grid, inf)
   is replayed over every setting with the server's own ``choose`` (:mod:`router.policy.tuning`).
3. The setting: the most accurate within ``--max-mean-tokens N`` or ``--max-tokens-x LEVEL:X`` (X times
   LEVEL's mean tokens; default: 2x the cheapest routed level), or the cheapest reaching
   ``--min-accuracy A`` (none does: the most accurate, said so). Among settings with the same outcome
   on the fit split the middle one is kept.
4. Report, for the fit split and each report split (``--report-splits``, default ``test,unseen``):
   every uniform level, the per-question oracle and the chosen setting (accuracy with a 95% Wilson
   interval, mean tokens, share of each level), and the budget claim against the reference level with
   a paired bootstrap interval of the accuracy difference. Fit and report questions are checked to be
   disjoint.

``--write-policy OUT.yaml`` writes the policy file with the tuned rule and costs (checked by loading
it first); ``--png OUT.png`` draws the cost-accuracy frontier, one panel per split (in the suffix's
image format; ``.png`` is appended when there is none). Both paths are checked before any work, and
both files are written (to temporary files, then renamed into place) or neither. Exit status 0, or
2 with the reason for a usage or data problem.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from router.policy.ladder import LevelSpec, Policy, Rule
from router.policy.tuning import (
    POLICY_ROW_PREFIX,
    Outcomes,
    Point,
    best_within_budget,
    cheapest_reaching,
    check_disjoint,
    collect_outcomes,
    most_accurate,
    oracle_picks,
    paired_bootstrap,
    plateau,
    plateau_centre,
    route,
    rows_file_problem,
    rule_for,
    scan_rows,
    sweep,
    wilson_interval,
)

PROG = "router tune"
REQUIRED_KEYS = ("id", "level", "correct", "completion_tokens")
DEFAULT_REPORT_SPLITS = ("test", "unseen")
DEFAULT_BUDGET_X = 2.0
CLASSIFIER_TRAIN_SPLIT = "train"  # router.difficulty.train fits on this split of its labels only


class TuneError(Exception):
    """The tuning cannot run; the message says why and what to do."""


# ----------------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Predictor:
    """Per-level P(correct) for question texts, and what the model behind them was trained on.

    ``predict(texts)`` returns ``[len(texts), len(levels)]``. ``trained_ids`` / ``trained_texts``
    (normalised) are the questions the model saw: report questions among them are left out.
    ``hyperparameters`` are a fresh :class:`router.difficulty.train.DifficultyModel`'s for ``--oof``.
    """

    levels: tuple[str, ...]
    predict: Callable[[Sequence[str]], np.ndarray]
    name: str = "predictions"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    trained_ids: frozenset[str] = frozenset()
    trained_texts: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()


def classifier_predictor(artifacts: Path | None = None) -> Predictor:
    """The committed difficulty classifier, with the training questions its card names."""
    from router.difficulty.features import normalize
    from router.difficulty.scorer import ARTIFACTS, DifficultyScorer
    from router.engine.manifest import sha256_file

    scorer = DifficultyScorer(artifacts or ARTIFACTS)
    card = scorer.card
    params = scorer.hyperparameters
    notes: list[str] = []
    data = card.get("data", {})
    ids: set[str] = set()
    texts: set[str] = set()
    labels = _card_file(data.get("file", ""), scorer.artifacts)
    if labels is None:
        notes.append(f"the classifier's training labels ({data.get('file') or 'not named in its card'}) are not "
                     "here: report questions cannot be checked against its training questions")
    else:
        for row in _rows(labels)[0]:
            if row.get("split") == CLASSIFIER_TRAIN_SPLIT and not str(row["level"]).startswith(POLICY_ROW_PREFIX):
                ids.add(str(row["id"]))
                texts.add(normalize(str(row.get("question", ""))))
        if data.get("sha256") and sha256_file(labels) != data["sha256"]:
            notes.append(f"{labels} changed since the classifier was trained: its current '{CLASSIFIER_TRAIN_SPLIT}' "
                         "questions are taken as the training questions")
    return Predictor(levels=scorer.levels, predict=scorer.predict_many, name=f"classifier {scorer.version}",
                     hyperparameters=params, trained_ids=frozenset(ids), trained_texts=frozenset(texts),
                     notes=tuple(notes))


def _card_file(name: str, artifacts: Path) -> Path | None:
    if not name:
        return None
    path = Path(name)
    repo = Path(__file__).resolve().parents[2]
    for candidate in (path, repo / path, artifacts / path):
        if candidate.is_file():
            return candidate
    return None


def out_of_fold(texts: Sequence[str], y: np.ndarray, levels: Sequence[str], hyperparameters: Mapping[str, Any],
                folds: int, seed: int = 0) -> np.ndarray:
    """K-fold out-of-fold P(correct) ``[len(texts), len(levels)]``: each fold scored by a fresh
    :class:`~router.difficulty.train.DifficultyModel` fitted on the other folds."""
    from router.difficulty.train import DifficultyModel

    n = len(texts)
    if not 2 <= folds <= n:
        raise TuneError(f"--oof needs 2 <= K <= the fit split's {n} questions, got {folds}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    pred = np.zeros((n, len(levels)))
    for k, held in enumerate(parts):
        fit_idx = np.concatenate([f for j, f in enumerate(parts) if j != k])
        model = DifficultyModel(**dict(hyperparameters)).fit([texts[i] for i in fit_idx], y[fit_idx], levels)
        pred[held] = model.predict_proba([texts[i] for i in held])
    return pred


# -------------------------------------------------------------------------------------- objective


@dataclass(frozen=True)
class Objective:
    """``max_tokens`` (absolute mean-token budget), ``tokens_x`` (``value`` x ``level``'s mean tokens)
    or ``min_accuracy`` (the cheapest setting reaching ``value``)."""

    kind: str
    value: float
    level: str = ""

    def describe(self) -> str:
        if self.kind == "max_tokens":
            return f"most accurate setting with mean tokens <= {self.value:g}"
        if self.kind == "tokens_x":
            return f"most accurate setting within {self.value:g}x {self.level}'s mean tokens"
        return f"cheapest setting with accuracy >= {self.value:g}"


def parse_tokens_x(spec: str) -> Objective:
    level, sep, x = spec.rpartition(":")
    try:
        value = float(x)
    except ValueError:
        value = math.nan
    if not sep or not level or not value > 0:
        raise TuneError(f"--max-tokens-x takes LEVEL:X with X > 0 (e.g. single:2), got {spec!r}")
    return Objective("tokens_x", value, level)


# ----------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Stat:
    """Accuracy with a 95% Wilson interval and mean completion tokens over ``n`` questions."""

    accuracy: float
    lo: float
    hi: float
    mean_tokens: float
    n: int

    @classmethod
    def of(cls, correct: np.ndarray, tokens: np.ndarray) -> Stat:
        c = np.asarray(correct, dtype=np.float64)
        lo, hi = wilson_interval(float(c.sum()), c.size)
        return cls(float(c.mean()) if c.size else 0.0, lo, hi, float(np.mean(tokens)) if c.size else 0.0, c.size)


@dataclass(frozen=True)
class Claim:
    """The chosen setting against the reference level on one split."""

    reference: str
    difference: float  # accuracy, adaptive - reference
    lo: float  # paired bootstrap 95% interval of the difference
    hi: float
    tokens_ratio: float  # adaptive mean tokens / reference mean tokens
    budget_tokens: float | None  # the objective's budget on this split (None for min_accuracy)
    within_budget: bool | None
    reached: bool | None  # min_accuracy: did the point estimate reach the target
    text: str


@dataclass(frozen=True)
class SplitResult:
    name: str
    role: str  # "fit" | "report"
    n: int
    predictions: str  # where the success predictions came from
    families: dict[str, int]
    new_families: tuple[str, ...]  # families with no question in the fit split
    uniform: dict[str, Stat]
    oracle: Stat
    adaptive: Stat
    shares: dict[str, float]
    sweep: list[Point]
    measured: dict[str, Stat]  # other levels and policy:NAME rows over this split's questions
    claim: Claim
    left_out_trained: int = 0  # report questions the classifier was trained on, left out


@dataclass(frozen=True)
class Tuning:
    policy: str
    rule: Rule
    objective: Objective
    routed: tuple[str, ...]
    costs: dict[str, float]  # fit split mean completion tokens per routed level
    fit_split: str
    chosen: Point  # on the fit split
    plateau: tuple[float, float]  # settings with the chosen outcome on the fit split
    budget_tokens: float | None  # on the fit split
    reference: str
    splits: list[SplitResult]
    complete: int
    incomplete: int
    split_sizes: dict[str, int]
    notes: list[str]


def _rows(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Rows of a results file that the tuner can use, and (line number, why) for every other non-blank
    line (:func:`router.policy.tuning.scan_rows`)."""
    try:
        found, bad = scan_rows(path, REQUIRED_KEYS)
    except OSError as exc:
        raise TuneError(f"cannot read results file {path}: {exc.strerror or exc}") from None
    return [row for _, row in found], bad


def _bad_lines(path: Path, bad: Sequence[tuple[int, str]], shown: int = 3) -> str:
    more = f"; {len(bad) - shown} more" if len(bad) > shown else ""
    return "; ".join(f"{path}:{n}: {why}" for n, why in bad[:shown]) + more


def read_rows(paths: Sequence[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of every results file, in order, and notes on the lines that were skipped (each a
    ``PATH:LINE``) and on (question, level) rows that more than one file has (the first file's row is
    the one used)."""
    rows: list[dict[str, Any]] = []
    notes = []
    bad_seen: list[str] = []
    first: dict[tuple[str, str], Path] = {}
    repeats: dict[tuple[Path, Path], int] = {}
    read: set[Path] = set()
    for path in map(Path, paths):
        if problem := rows_file_problem(path):
            raise TuneError(f"results file {path} {problem}")
        if path.resolve() in read:
            notes.append(f"{path}: given more than once; read once")
            continue
        read.add(path.resolve())
        got, bad = _rows(path)
        if bad:
            notes.append(f"{path}: skipped {len(bad)} line(s) that are not result rows (torn, foreign or with a bad "
                         f"value): {_bad_lines(path, bad)}")
            bad_seen.append(_bad_lines(path, bad, shown=2))
        for row in got:
            earlier = first.setdefault((row["id"], row["level"]), path)
            if earlier != path:
                repeats[(earlier, path)] = repeats.get((earlier, path), 0) + 1
        rows += got
    for (earlier, later), n in repeats.items():
        notes.append(f"WARNING: {n} (question, level) row(s) of {later} are also in {earlier}: the rows of {earlier} "
                     "are used")
    if not rows:
        why = f" ({'; '.join(bad_seen)})" if bad_seen else ""
        raise TuneError(f"no result rows in {', '.join(str(p) for p in paths)}{why}")
    return rows, notes


def _levels_in(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for row in rows:
        level = str(row["level"])
        if level not in out:
            out.append(level)
    return out


def _columns(predictor: Predictor, texts: Sequence[str], names: Sequence[str]) -> np.ndarray:
    pred = np.asarray(predictor.predict(list(texts)), dtype=np.float64).reshape(len(texts), len(predictor.levels))
    return pred[:, [predictor.levels.index(n) for n in names]]


def _trained_mask(out: Outcomes, predictor: Predictor) -> np.ndarray:
    if not predictor.trained_ids and not predictor.trained_texts:
        return np.zeros(len(out), dtype=bool)
    from router.difficulty.features import normalize

    return np.array([q in predictor.trained_ids or normalize(t) in predictor.trained_texts
                     for q, t in zip(out.ids, out.texts, strict=True)], dtype=bool)


def _measured(rows: Sequence[Mapping[str, Any]], ids: Iterable[str], skip: Iterable[str]) -> dict[str, Stat]:
    wanted, skip = set(ids), set(skip)
    first: dict[str, dict[str, tuple[float, float]]] = {}
    for row in rows:
        level, qid = str(row["level"]), str(row["id"])
        if level in skip or qid not in wanted:
            continue
        first.setdefault(level, {}).setdefault(qid, (float(row["correct"]), float(row["completion_tokens"])))
    return {lv: Stat.of(np.array([c for c, _ in v.values()]), np.array([t for _, t in v.values()]))
            for lv, v in first.items()}


def tune(
    rows: Sequence[Mapping[str, Any]],
    policy: Policy,
    predictor: Predictor,
    *,
    rule: str = "threshold",
    objective: Objective | None = None,
    fit_split: str = "train",
    report_splits: Sequence[str] = DEFAULT_REPORT_SPLITS,
    require_report_splits: bool = False,
    oof: int = 0,
    seed: int = 0,
) -> Tuning:
    """Tune ``policy``'s ``rule`` on ``fit_split`` of ``rows`` and replay the result on every split."""
    notes: list[str] = list(predictor.notes)
    in_results = [lv for lv in _levels_in(rows) if not lv.startswith(POLICY_ROW_PREFIX)]
    routed_specs = [lv for lv in policy.levels if lv.name in in_results and lv.name in predictor.levels]
    routed = tuple(lv.name for lv in routed_specs)
    if len(routed) < 2:
        raise TuneError(
            f"policy '{policy.name}' routes {len(routed)} level(s) ({', '.join(routed) or 'none'}): a level must be in "
            f"the policy, in the results ({', '.join(in_results) or 'none'}) and predicted by the {predictor.name} "
            f"({', '.join(predictor.levels)}), and routing needs two")
    unscored = [lv.name for lv in policy.levels if lv.name in predictor.levels and lv.name not in routed]
    if unscored:
        notes.append(f"WARNING: the server would also route to {', '.join(unscored)} (in the policy and predicted) but "
                     "the results have no rows for it: these numbers assume it is never chosen")
    if fit_split in report_splits:
        raise TuneError(f"the fit split '{fit_split}' cannot also be a report split")
    try:
        outcomes = collect_outcomes(rows, routed)
    except ValueError as exc:
        raise TuneError(str(exc)) from None
    if not len(outcomes):
        raise TuneError(f"no complete questions: none has a row for every routed level ({', '.join(routed)})")
    sizes = outcomes.split_sizes()
    fit = outcomes.split(fit_split)
    if not len(fit):
        raise TuneError(f"fit split '{fit_split}' has no complete questions; splits: {_sizes(sizes)}")

    reports: dict[str, Outcomes] = {}
    left_out: dict[str, int] = {}
    for name in report_splits:
        part = outcomes.split(name)
        trained = _trained_mask(part, predictor)
        if trained.any():
            notes.append(f"{name}: left out {int(trained.sum())} of {len(part)} question(s) the {predictor.name} was "
                         "trained on (same id or text): its predictions on them are in-sample")
            part = part.subset(~trained)
        left_out[name] = int(trained.sum())
        if not len(part):
            why = f"report split '{name}' has no complete questions the {predictor.name} did not train on; " \
                  f"splits: {_sizes(sizes)}"
            if require_report_splits:
                raise TuneError(why)
            notes.append(f"skipped {why}")
            continue
        reports[name] = part
    try:
        check_disjoint(fit.ids, {n: p.ids for n, p in reports.items()})
    except ValueError as exc:
        raise TuneError(str(exc)) from None
    fit_texts = set(fit.texts)
    for name, part in reports.items():
        same = sum(t in fit_texts for t in part.texts)
        if same:
            notes.append(f"{name}: {same} question text(s) also occur (under other ids) in the fit split")

    costs = {n: round(float(c), 1) for n, c in zip(routed, fit.tokens.mean(axis=0), strict=True)}
    ladder = [replace(spec, cost_tokens=costs[spec.name]) for spec in routed_specs]
    objective = objective or Objective("tokens_x", DEFAULT_BUDGET_X, min(routed, key=lambda n: costs[n]))
    if objective.kind == "tokens_x" and objective.level not in routed:
        raise TuneError(f"--max-tokens-x level '{objective.level}' is not a routed level ({', '.join(routed)})")
    if policy.cpu_max_level:
        notes.append(f"the policy's cpu_max_level '{policy.cpu_max_level}' is not applied: these numbers are for a "
                     "server with an accelerator")

    if oof:
        success_fit = out_of_fold(fit.texts, fit.correct, routed, predictor.hyperparameters, oof, seed)
        fit_source = f"{oof}-fold out-of-fold, fresh classifiers ({_params(predictor.hyperparameters)})"
    else:
        success_fit = _columns(predictor, fit.texts, routed)
        fit_source = predictor.name
        in_sample = int(_trained_mask(fit, predictor).sum())
        if in_sample:
            notes.append(f"WARNING: {in_sample} of {len(fit)} fit question(s) were in the {predictor.name}'s training "
                         "set: its predictions there are in-sample (flatter than real); use --oof K")

    points = sweep(rule, ladder, success_fit, fit.correct, fit.tokens)
    uni_fit = {n: Stat.of(fit.correct[:, j], fit.tokens[:, j]) for j, n in enumerate(routed)}
    budget = _budget(objective, uni_fit)
    if objective.kind == "min_accuracy":
        best = cheapest_reaching(points, objective.value)
        if best is None:
            best = most_accurate(points)
            notes.append(f"no setting reaches accuracy {objective.value:g} on {fit_split} (best {best.accuracy:.3f}); "
                         "the most accurate is chosen")
        reference = _reference_for_accuracy(uni_fit, objective.value)
    else:
        assert budget is not None
        best = best_within_budget(points, budget)
        if best.mean_tokens > budget:
            notes.append(f"no setting stays within {budget:.1f} mean tokens on {fit_split}; the cheapest is chosen")
        reference = objective.level if objective.kind == "tokens_x" else _reference_for_budget(uni_fit, budget)
    chosen = plateau_centre(points, best)
    run = plateau(points, best)
    tuned = rule_for(rule, chosen.setting)

    splits = [_split_result(fit_split, "fit", fit, success_fit, fit_source, ladder, tuned, objective,
                            reference, rows, fit_families=set(fit.families), seed=seed, points=points)]
    for name, part in reports.items():
        success = _columns(predictor, part.texts, routed)
        splits.append(_split_result(name, "report", part, success, predictor.name, ladder, tuned, objective,
                                    reference, rows, fit_families=set(fit.families), seed=seed,
                                    left_out=left_out.get(name, 0)))
    return Tuning(
        policy=policy.name, rule=tuned, objective=objective, routed=routed, costs=costs, fit_split=fit_split,
        chosen=chosen, plateau=(run[0].setting, run[-1].setting), budget_tokens=budget, reference=reference,
        splits=splits, complete=len(outcomes), incomplete=len(outcomes.incomplete), split_sizes=sizes, notes=notes,
    )


def _sizes(sizes: Mapping[str, int]) -> str:
    return ", ".join(f"'{k}' {v}" for k, v in sizes.items()) or "none"


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "default hyperparameters"


def _budget(objective: Objective, uni: Mapping[str, Stat]) -> float | None:
    if objective.kind == "max_tokens":
        return objective.value
    if objective.kind == "tokens_x":
        return objective.value * uni[objective.level].mean_tokens
    return None


def _reference_for_budget(uni: Mapping[str, Stat], budget: float) -> str:
    """The uniform level a budget claim is made against: the most accurate one within the budget."""
    within = [n for n, s in uni.items() if s.mean_tokens <= budget]
    if not within:
        return min(uni, key=lambda n: uni[n].mean_tokens)
    return max(within, key=lambda n: (round(uni[n].accuracy, 9), -uni[n].mean_tokens))


def _reference_for_accuracy(uni: Mapping[str, Stat], target: float) -> str:
    """The cheapest uniform level reaching ``target`` (the most accurate when none does)."""
    reaching = [n for n, s in uni.items() if s.accuracy >= target - 1e-12]
    if reaching:
        return min(reaching, key=lambda n: uni[n].mean_tokens)
    return max(uni, key=lambda n: (round(uni[n].accuracy, 9), -uni[n].mean_tokens))


def _split_result(name: str, role: str, part: Outcomes, success: np.ndarray, source: str, ladder: list[LevelSpec],
                  tuned: Rule, objective: Objective, reference: str, rows: Sequence[Mapping[str, Any]],
                  *, fit_families: set[str], seed: int, left_out: int = 0,
                  points: list[Point] | None = None) -> SplitResult:
    """One split's report; ``points`` is its sweep when the caller already has it (the fit split)."""
    names = [lv.name for lv in ladder]
    rows_idx = np.arange(len(part))
    idx = route(ladder, tuned, success)
    picked_correct, picked_tokens = part.correct[rows_idx, idx], part.tokens[rows_idx, idx]
    uni = {n: Stat.of(part.correct[:, j], part.tokens[:, j]) for j, n in enumerate(names)}
    orc = oracle_picks(part.correct, part.tokens)
    adaptive = Stat.of(picked_correct, picked_tokens)
    ref = names.index(reference)
    diff, lo, hi = paired_bootstrap(picked_correct, part.correct[:, ref], seed=seed)
    families: dict[str, int] = {}
    for f in part.families:
        families[f] = families.get(f, 0) + 1
    claim = _claim(name, role, adaptive, uni[reference], reference, (diff, lo, hi), objective)
    return SplitResult(
        name=name, role=role, n=len(part), predictions=source, families=families,
        new_families=tuple(f for f in families if f not in fit_families),
        uniform=uni,
        oracle=Stat.of(part.correct[rows_idx, orc], part.tokens[rows_idx, orc]),
        adaptive=adaptive,
        shares={n: float((idx == j).mean()) for j, n in enumerate(names)},
        sweep=points if points is not None else sweep(tuned.kind, ladder, success, part.correct, part.tokens),
        measured=_measured(rows, part.ids, names),
        claim=claim,
        left_out_trained=left_out,
    )


def _claim(split: str, role: str, adaptive: Stat, ref: Stat, reference: str, diff: tuple[float, float, float],
           objective: Objective) -> Claim:
    d, lo, hi = diff
    ratio = adaptive.mean_tokens / ref.mean_tokens if ref.mean_tokens > 0 else math.inf
    text = (f"on {split}{' (fit: chosen here, optimistic)' if role == 'fit' else ''}: adaptive "
            f"{adaptive.accuracy:.2f} [{adaptive.lo:.2f}, {adaptive.hi:.2f}] at {adaptive.mean_tokens:.0f} tokens vs "
            f"{reference} {ref.accuracy:.2f} [{ref.lo:.2f}, {ref.hi:.2f}] at {ref.mean_tokens:.0f} tokens: "
            f"{d:+.2f} accuracy [{lo:+.2f}, {hi:+.2f}] (paired bootstrap), {ratio:.2f}x the tokens")
    budget = within = reached = None
    if objective.kind == "tokens_x":
        budget = objective.value * ref.mean_tokens
        within = adaptive.mean_tokens <= budget
        text += f"; budget {objective.value:g}x {reference} = {budget:.0f} tokens: {'met' if within else 'EXCEEDED'}"
    elif objective.kind == "max_tokens":
        budget = objective.value
        within = adaptive.mean_tokens <= budget
        text += f"; budget {budget:g} tokens: {'met' if within else 'EXCEEDED'}"
    else:
        reached = adaptive.accuracy >= objective.value - 1e-12
        sure = "" if adaptive.lo >= objective.value else " (not with 95% confidence)"
        text += f"; target accuracy {objective.value:g}: " + (f"reached{sure}" if reached else "NOT reached")
    return Claim(reference, d, lo, hi, ratio, budget, within, reached, text)


# ---------------------------------------------------------------------------------------- output


def _fmt_setting(rule: Rule) -> str:
    return f"target={rule.target:g}" if rule.kind == "threshold" else f"lambda={rule.lam:g}"


def render(t: Tuning, sources: Sequence[str], policy_file: str) -> str:
    """The text report."""
    setting = "target" if t.rule.kind == "threshold" else "lambda"
    lo, hi = t.plateau
    lines = [
        f"{PROG}: policy '{t.policy}' from {policy_file}, rule {t.rule.kind}",
        f"results: {', '.join(sources)}: {t.complete} complete question(s) ({t.incomplete} incomplete left out); "
        f"splits {', '.join(f'{k} {v}' for k, v in t.split_sizes.items())}",
        f"routed levels, cost = {t.fit_split} mean completion tokens: "
        + ", ".join(f"{n} {c:g}" for n, c in t.costs.items()),
        f"objective: {t.objective.describe()}"
        + (f" = {t.budget_tokens:.1f} tokens on {t.fit_split}" if t.objective.kind == "tokens_x" else "")
        + f"; claims against {t.reference}",
        f"chosen: {t.rule.describe()}"
        + (f" ({setting} {lo:g} ... {hi:g} give the same outcome on {t.fit_split}; the middle is kept)"
           if lo != hi else ""),
    ]
    for s in t.splits:
        head = f"{s.name}: {s.role}, {s.n} question(s), predictions: {s.predictions}"
        if s.role == "fit":
            head += " (optimistic: the setting was chosen here)"
        elif s.new_families:
            share = sum(s.families[f] for f in s.new_families)
            head += f"; {share} question(s) from families not in {t.fit_split}: {', '.join(s.new_families)}"
        lines += ["", head, f"  {'':30s} {'accuracy':>8s} {'95% CI':>14s} {'tokens':>8s}"]

        def row(label: str, st: Stat, extra: str = "") -> str:
            return (f"  {label:30s} {st.accuracy:8.3f} [{st.lo:.3f}, {st.hi:.3f}] {st.mean_tokens:8.1f}"
                    + (f"  {extra}" if extra else ""))

        for n, st in s.uniform.items():
            lines.append(row(f"always {n}", st))
        lines.append(row("oracle (cheapest correct)", s.oracle))
        mix = ", ".join(f"{n} {v:.0%}" for n, v in s.shares.items())
        lines.append(row(f"adaptive {_fmt_setting(t.rule)}", s.adaptive, mix))
        for n, st in s.measured.items():
            lines.append(row(f"measured {n}", st, f"n={st.n}" if st.n != s.n else ""))
    lines += ["", "claims:"] + [f"  {s.claim.text}" for s in t.splits]
    if t.notes:
        lines += ["", "notes:"] + [f"  {n}" for n in t.notes]
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def rule_yaml(rule: Rule) -> dict[str, Any]:
    """The ``rule:`` mapping of a policy file for a threshold or utility rule."""
    if rule.kind == "threshold":
        return {"kind": "threshold", "target": float(rule.target)}
    return {"kind": "utility", "lambda": float(rule.lam)}


def to_json(t: Tuning) -> dict[str, Any]:
    """The tuning as plain JSON-able data (infinite lambda as the string "inf")."""
    return _jsonable({**asdict(t), "rule": rule_yaml(t.rule)})


def _need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise TuneError("--png needs matplotlib (pip install -e '.[eval]')") from None


def frontier_figure(t: Tuning) -> Any:
    """Mean tokens vs accuracy, one panel per split: uniform levels, oracle, the sweep and the chosen point."""
    _need_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(5.0 * len(t.splits), 4.4), layout="constrained")
    axes = fig.subplots(1, len(t.splits), squeeze=False)[0]
    for k, (ax, s) in enumerate(zip(axes, t.splits, strict=True)):
        xs = [p.mean_tokens for p in s.sweep]
        ax.plot(xs, [p.accuracy for p in s.sweep], "-", marker=".", ms=3, lw=1.2, color="tab:blue",
                label=f"adaptive ({t.rule.kind} sweep)")
        for j, (n, st) in enumerate(s.uniform.items()):
            ax.scatter([st.mean_tokens], [st.accuracy], marker="s", s=36, color="tab:gray", zorder=3)
            ax.annotate(n, (st.mean_tokens, st.accuracy), textcoords="offset points", xytext=(5, 4 if j % 2 else -11),
                        fontsize=8)
        ax.scatter([s.oracle.mean_tokens], [s.oracle.accuracy], marker="*", s=160, color="gold", edgecolors="black",
                   zorder=4, label="oracle")
        for n, st in s.measured.items():
            ax.scatter([st.mean_tokens], [st.accuracy], marker="x", s=40, color="tab:purple", zorder=3)
            ax.annotate(f"{n} (measured)", (st.mean_tokens, st.accuracy), textcoords="offset points", xytext=(5, -10),
                        fontsize=7, color="tab:purple")
        a = s.adaptive
        ax.errorbar([a.mean_tokens], [a.accuracy], yerr=[[a.accuracy - a.lo], [a.hi - a.accuracy]], fmt="o", ms=10,
                    mfc="none", mec="red", mew=2, ecolor="red", capsize=3, zorder=5,
                    label=f"chosen {_fmt_setting(t.rule)}")
        if s.claim.budget_tokens is not None:
            ax.axvline(s.claim.budget_tokens, ls="--", lw=1, color="tab:red", alpha=0.6, label="token budget")
        every = xs + [st.mean_tokens for st in (*s.uniform.values(), s.oracle, *s.measured.values())]
        if min(every) > 0:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        tops = [p.accuracy for p in s.sweep] + [st.accuracy for st in (*s.uniform.values(), *s.measured.values())]
        ax.set_ylim(-0.03, min(1.05, max(0.1, a.hi, s.oracle.accuracy, *tops) + 0.06))
        ax.margins(x=0.1)
        ax.set_xlabel("mean completion tokens per question")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{s.name} ({s.role}, {s.n} questions)", fontsize=10)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"policy '{t.policy}': {t.rule.describe()}, {t.objective.describe()}", fontsize=10)
    return fig


def frontier_path(path: Path) -> tuple[Path, str]:
    """Where ``--png PATH`` is drawn and in which image format: the suffix's, with ``.png`` appended
    when there is none (what matplotlib would write). Refuses a format matplotlib cannot write and a
    path :func:`check_output` refuses."""
    _need_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    if not path.suffix:
        path = path.with_name(path.name + ".png")
    fmt = path.suffix[1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt not in formats:
        raise TuneError(f"--png {path}: matplotlib cannot write '.{fmt}' images; use one of "
                        f"{', '.join('.' + f for f in sorted(formats))}")
    check_output(path, "--png")
    return path, fmt


def draw_frontier(t: Tuning, path: Path) -> Path:
    """Draw :func:`frontier_figure` to ``path`` (see :func:`frontier_path`); returns the path written."""
    path, fmt = frontier_path(path)
    fig = frontier_figure(t)
    write_outputs([(path, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))])
    return path


def policy_text(policy_file: Path, t: Tuning, header: Sequence[str] = ()) -> str:
    """``policy_file`` with ``t.policy``'s rule and routed costs replaced, checked to load as tuned."""
    import yaml

    from router.errors import PolicyFileError
    from router.policy.loader import parse_policies

    raw = yaml.safe_load(Path(policy_file).read_text(encoding="utf-8"))
    entry = next(p for p in raw["policies"] if p.get("name") == t.policy)
    entry["rule"] = rule_yaml(t.rule)
    for level in entry["levels"]:
        if level.get("name") in t.costs:
            level["cost_tokens"] = float(t.costs[level["name"]])
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    try:
        loaded = parse_policies(yaml.safe_load(text), "the tuned policy file").get(t.policy)
    except PolicyFileError as exc:
        raise TuneError(f"the tuned policy file would not load: {exc}") from None
    if loaded.rule != t.rule or any(loaded.level(n).cost_tokens != c for n, c in t.costs.items()):
        raise TuneError(f"the written policy '{t.policy}' does not read back as tuned ({loaded.rule.describe()})")
    return text


def write_policy(policy_file: Path, t: Tuning, out: Path, header: Sequence[str] = ()) -> None:
    """:func:`policy_text` written to ``out`` (see :func:`write_outputs`)."""
    check_output(out, "--write-policy")
    text = policy_text(policy_file, t, header)
    write_outputs([(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))])


def check_output(path: Path, flag: str) -> None:
    """Refuse an output path that cannot be written, before any work is done: a directory or another
    non-regular file (``os.replace`` would put a file in place of a device), or a parent that is not
    a directory or not writable. Missing parent directories are made when writing."""
    if path.is_dir():
        raise TuneError(f"{flag} {path} is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise TuneError(f"{flag} {path} is not a regular file")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise TuneError(f"{flag} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TuneError(f"{flag} {path}: directory {parent} is not writable")


def write_outputs(outputs: Sequence[tuple[Path, Callable[[Path], object]]]) -> None:
    """Write every ``(path, write)``: ``write(tmp)`` to a temporary file beside each path, then rename
    them all into place. A failed write (``OSError`` or ``ValueError``: a full disk, an image format
    that cannot be saved) raises :class:`TuneError` with no output written and no temporary file
    left behind."""
    staged: list[tuple[Path, Path]] = []
    path = None
    try:
        for path, write in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            staged.append((path.with_name(f".{path.name}.tmp"), path))
            write(staged[-1][0])
        for tmp, path in staged:
            os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        raise TuneError(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                 epilog="\n".join(__doc__.splitlines()[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", action="append", type=Path, required=True, metavar="FILE.jsonl",
                    help="LevelResult rows of forced levels (repeatable)")
    ap.add_argument("--policy-file", type=Path, default=None, help="policies (default: the configured policy file)")
    ap.add_argument("--policy", default="", help="the policy to tune (default: the file's default policy)")
    ap.add_argument("--predictions", choices=("classifier",), default="classifier",
                    help="where per-level success predictions come from (default: the committed classifier)")
    ap.add_argument("--difficulty-dir", type=Path, default=None,
                    help="classifier artifacts (default: the configured difficulty_dir)")
    ap.add_argument("--oof", type=int, default=0, metavar="K",
                    help="fit-split predictions K-fold out-of-fold from fresh classifiers (card hyperparameters)")
    ap.add_argument("--fit-split", default="train", help="split the setting is chosen on (default: %(default)s)")
    ap.add_argument("--report-splits", default=None,
                    help=f"comma-separated splits to report on (default: {','.join(DEFAULT_REPORT_SPLITS)}, "
                         "those present)")
    ap.add_argument("--rule", choices=("threshold", "utility"), default=None,
                    help="rule to sweep (default: the policy's own, or threshold)")
    goal = ap.add_mutually_exclusive_group()
    goal.add_argument("--max-mean-tokens", type=float, default=None, metavar="N",
                      help="maximise accuracy with mean completion tokens <= N")
    goal.add_argument("--max-tokens-x", default=None, metavar="LEVEL:X",
                      help=f"maximise accuracy within X times LEVEL's mean tokens (default: cheapest routed "
                           f"level:{DEFAULT_BUDGET_X:g})")
    goal.add_argument("--min-accuracy", type=float, default=None, metavar="A",
                      help="the cheapest setting with accuracy >= A on the fit split")
    ap.add_argument("--seed", type=int, default=0, help="out-of-fold shuffling and bootstrap resampling")
    ap.add_argument("--json", action="store_true", help="print the result as JSON instead of the text report")
    ap.add_argument("--write-policy", type=Path, default=None, metavar="OUT.yaml",
                    help="write the policy file with the tuned rule and costs")
    ap.add_argument("--png", type=Path, default=None, metavar="OUT.png", help="draw the cost-accuracy frontier")
    return ap


def _objective(args: argparse.Namespace) -> Objective | None:
    if args.max_mean_tokens is not None:
        if not args.max_mean_tokens > 0:
            raise TuneError(f"--max-mean-tokens must be > 0, got {args.max_mean_tokens:g}")
        return Objective("max_tokens", args.max_mean_tokens)
    if args.max_tokens_x is not None:
        return parse_tokens_x(args.max_tokens_x)
    if args.min_accuracy is not None:
        if not 0 <= args.min_accuracy <= 1:
            raise TuneError(f"--min-accuracy must be within [0, 1], got {args.min_accuracy:g}")
        return Objective("min_accuracy", args.min_accuracy)
    return None


def _settings() -> Any:
    from router.config import Settings

    return Settings()


def main(argv: list[str] | None = None, *, predictor: Predictor | None = None) -> int:
    """``router tune``; ``predictor`` replaces the committed classifier (tests)."""
    args = build_parser().parse_args(argv)
    from router.errors import RouterError

    try:
        objective = _objective(args)
        png = frontier_path(args.png) if args.png is not None else None
        if args.write_policy is not None:
            check_output(args.write_policy, "--write-policy")
        rows, read_notes = read_rows(args.results)
        policy_file = args.policy_file or _settings().policy_file
        from router.policy.loader import load_policies

        policies = load_policies(policy_file)
        try:
            policy = policies.get(args.policy)
        except RouterError:
            known = ", ".join(p.name for p in policies)
            raise TuneError(f"unknown policy '{args.policy}' in {policy_file}; known: {known}") from None
        if predictor is None:
            artifacts = args.difficulty_dir or _settings().difficulty_dir
            if artifacts is None:
                raise TuneError("no difficulty classifier configured (difficulty_dir is empty); give --difficulty-dir")
            predictor = classifier_predictor(artifacts)
        rule = args.rule or (policy.rule.kind if policy.routed else "threshold")
        explicit = args.report_splits is not None
        reports = [s.strip() for s in (args.report_splits or ",".join(DEFAULT_REPORT_SPLITS)).split(",") if s.strip()]
        result = tune(rows, policy, predictor, rule=rule, objective=objective, fit_split=args.fit_split,
                      report_splits=reports, require_report_splits=explicit, oof=args.oof, seed=args.seed)
        result.notes[:0] = read_notes
        sources = [str(p) for p in args.results]
        report = render(result, sources, str(policy_file))
        outputs: list[tuple[Path, Callable[[Path], object]]] = []
        written = []
        if args.write_policy is not None:
            header = [f"Tuned by `{PROG}` from {', '.join(sources)} (policy '{result.policy}': "
                      f"{result.rule.describe()}; cost_tokens = {result.fit_split} mean completion tokens).",
                      f"Objective: {result.objective.describe()}."] + [s.claim.text for s in result.splits]
            text = policy_text(Path(policy_file), result, header)
            outputs.append((args.write_policy, lambda tmp: tmp.write_text(text, encoding="utf-8")))
            written.append(f"wrote policy file {args.write_policy}")
        if png is not None:
            fig, fmt = frontier_figure(result), png[1]
            outputs.append((png[0], lambda tmp: fig.savefig(tmp, dpi=110, format=fmt)))
            written.append(f"wrote frontier {png[0]}")
        write_outputs(outputs)  # both or neither
    except (TuneError, RouterError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**to_json(result), "written": written}, indent=2))
    else:
        print("\n".join([report, *([""] + written if written else [])]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
