"""Offline replay of routing rules over labelled outcomes: the cost-quality of a policy setting.

Pure functions over arrays: ``success[q, l]`` (predicted P(correct) of level l for question q),
``correct[q, l]`` and ``tokens[q, l]`` (what level l really did on q in the label runs). A rule is
replayed with the same :func:`router.policy.ladder.choose` the server uses, so an offline number
is what the server would have done on those questions.

Besides the replay itself: sweeps over a rule's setting (:func:`sweep`), the choice of a setting
under a token budget or for a target accuracy (:func:`best_within_budget`, :func:`cheapest_reaching`,
:func:`plateau_centre`), the uniform and oracle reference points, confidence intervals
(:func:`wilson_interval`, :func:`paired_bootstrap`), and the outcome matrices built from
``LevelResult`` rows (:func:`collect_outcomes`, each row checked by :func:`row_problem`) with the
check that tuning and report questions are disjoint (:func:`check_disjoint`). ``router tune``
(:mod:`router.policy.tune_cli`) composes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from router.policy.ladder import LevelSpec, Rule, choose

POLICY_ROW_PREFIX = "policy:"  # rows of a policy's own choice (``router eval --route``), not a forced level
ROW_TEXT_KEYS = ("question", "family", "split")  # optional in a row; strings when present
THRESHOLD_GRID: tuple[float, ...] = tuple(round(t, 3) for t in np.linspace(0.0, 1.0, 101))
# lambda per 1000 tokens: 0 (the most likely level whatever it costs) ... inf (always the cheapest)
LAMBDA_GRID: tuple[float, ...] = (0.0, *(float(f"{x:.4g}") for x in np.logspace(-2, 3, 51)), math.inf)


@dataclass(frozen=True)
class Point:
    """One setting's replayed outcome."""

    setting: float
    accuracy: float
    mean_tokens: float
    shares: dict[str, float]  # level -> share of questions routed there


def route(levels: Sequence[LevelSpec], rule: Rule, success: np.ndarray) -> np.ndarray:
    """Index into ``levels`` of the level ``rule`` picks for every question (the server's ``choose``)."""
    names = [lv.name for lv in levels]
    picks = []
    for q in range(success.shape[0]):
        chosen = choose(levels, dict(zip(names, success[q].tolist(), strict=True)), rule)
        assert chosen is not None
        picks.append(names.index(chosen[0].name))
    return np.array(picks, dtype=int)


def setting_of(rule: Rule) -> float:
    """The swept number of a rule: the threshold's target or the utility's lambda."""
    return rule.target if rule.kind == "threshold" else rule.lam


def rule_for(kind: str, setting: float) -> Rule:
    """The rule of ``kind`` (``threshold`` or ``utility``) at ``setting``."""
    if kind == "threshold":
        return Rule("threshold", target=setting)
    if kind == "utility":
        return Rule("utility", lam=setting)
    raise ValueError(f"rule kind must be 'threshold' or 'utility', got {kind!r}")


def replay(levels: Sequence[LevelSpec], rule: Rule, success: np.ndarray, correct: np.ndarray,
           tokens: np.ndarray) -> Point:
    """Route every question by ``rule`` and score what the chosen level really did."""
    names = [lv.name for lv in levels]
    idx = route(levels, rule, success)
    rows = np.arange(len(idx))
    return Point(
        setting=setting_of(rule),
        accuracy=float(correct[rows, idx].mean()),
        mean_tokens=float(tokens[rows, idx].mean()),
        shares={n: float((idx == i).mean()) for i, n in enumerate(names)},
    )


def routed_correct(levels: Sequence[LevelSpec], rule: Rule, success: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Per question: did the level ``rule`` picks answer correctly (for intervals on the replay)."""
    idx = route(levels, rule, success)
    return np.asarray(correct)[np.arange(len(idx)), idx]


def sweep_threshold(levels: Sequence[LevelSpec], success: np.ndarray, correct: np.ndarray, tokens: np.ndarray,
                    targets: Sequence[float] | None = None) -> list[Point]:
    grid = targets if targets is not None else THRESHOLD_GRID
    return [replay(levels, Rule("threshold", target=t), success, correct, tokens) for t in grid]


def sweep_utility(levels: Sequence[LevelSpec], success: np.ndarray, correct: np.ndarray, tokens: np.ndarray,
                  lams: Sequence[float] | None = None) -> list[Point]:
    """Replay the utility rule over ``lams`` (default :data:`LAMBDA_GRID`: 0, a log grid, inf)."""
    grid = lams if lams is not None else LAMBDA_GRID
    return [replay(levels, Rule("utility", lam=lam), success, correct, tokens) for lam in grid]


def sweep(kind: str, levels: Sequence[LevelSpec], success: np.ndarray, correct: np.ndarray, tokens: np.ndarray,
          grid: Sequence[float] | None = None) -> list[Point]:
    """Replay rule ``kind`` over ``grid`` (default: :data:`THRESHOLD_GRID` or :data:`LAMBDA_GRID`)."""
    if kind == "threshold":
        return sweep_threshold(levels, success, correct, tokens, grid)
    if kind == "utility":
        return sweep_utility(levels, success, correct, tokens, grid)
    raise ValueError(f"rule kind must be 'threshold' or 'utility', got {kind!r}")


def best_within_budget(points: Sequence[Point], max_mean_tokens: float) -> Point:
    """The most accurate point whose mean tokens stay within the budget (cheaper among equals)."""
    affordable = [p for p in points if p.mean_tokens <= max_mean_tokens]
    if not affordable:
        return min(points, key=lambda p: p.mean_tokens)
    return max(affordable, key=lambda p: (round(p.accuracy, 9), -p.mean_tokens))


def cheapest_reaching(points: Sequence[Point], min_accuracy: float) -> Point | None:
    """The cheapest point with accuracy >= ``min_accuracy`` (more accurate among equals); None if none does."""
    reaching = [p for p in points if p.accuracy >= min_accuracy - 1e-12]
    if not reaching:
        return None
    return min(reaching, key=lambda p: (round(p.mean_tokens, 9), -p.accuracy))


def most_accurate(points: Sequence[Point]) -> Point:
    """The most accurate point (cheaper among equals)."""
    return max(points, key=lambda p: (round(p.accuracy, 9), -p.mean_tokens))


def _same_outcome(a: Point, b: Point) -> bool:
    return (math.isclose(a.accuracy, b.accuracy, abs_tol=1e-12) and math.isclose(a.mean_tokens, b.mean_tokens,
                                                                                   abs_tol=1e-9)
            and a.shares.keys() == b.shares.keys()
            and all(math.isclose(a.shares[k], b.shares[k], abs_tol=1e-12) for k in a.shares))


def plateau(points: Sequence[Point], chosen: Point) -> list[Point]:
    """The run of consecutive points (in sweep order) around ``chosen`` with exactly its outcome."""
    i = next(k for k, p in enumerate(points) if p is chosen or p == chosen)
    lo = i
    while lo > 0 and _same_outcome(points[lo - 1], chosen):
        lo -= 1
    hi = i
    while hi + 1 < len(points) and _same_outcome(points[hi + 1], chosen):
        hi += 1
    return list(points[lo:hi + 1])


def plateau_centre(points: Sequence[Point], chosen: Point) -> Point:
    """The middle setting of ``chosen``'s plateau: the same outcome on these questions, with the
    widest margin to either side, so that predictions that shift a little change the routing least."""
    run = plateau(points, chosen)
    return run[(len(run) - 1) // 2]


def pareto_front(points: Iterable[Point]) -> list[Point]:
    """Points no other point beats on both accuracy and mean tokens, by mean tokens (one per outcome)."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.mean_tokens, -p.accuracy)):
        if not front or p.accuracy > front[-1].accuracy + 1e-12:
            front.append(p)
    return front


def uniform(correct: np.ndarray, tokens: np.ndarray, names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """(accuracy, mean tokens) of always running each level."""
    return {n: (float(correct[:, i].mean()), float(tokens[:, i].mean())) for i, n in enumerate(names)}


def oracle_picks(correct: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Per question, the index of the cheapest correct level (the cheapest level when none is correct)."""
    picks = []
    for q in range(correct.shape[0]):
        right = np.flatnonzero(correct[q])
        picks.append(right[np.argmin(tokens[q, right])] if right.size else int(np.argmin(tokens[q])))
    return np.array(picks, dtype=int)


def oracle(correct: np.ndarray, tokens: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean tokens) of :func:`oracle_picks`."""
    rows = np.arange(correct.shape[0])
    picks = oracle_picks(correct, tokens)
    return float(np.mean(np.asarray(correct, dtype=float)[rows, picks])), float(np.mean(tokens[rows, picks]))


# ------------------------------------------------------------------------------- intervals


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% for the default ``z``); (0, 1) when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, reps: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) over the same questions, with a percentile bootstrap interval (questions resampled)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be two 1-d arrays of one length, got {a.shape} and {b.shape}")
    diff = float(a.mean() - b.mean()) if a.size else 0.0
    if a.size == 0:
        return diff, 0.0, 0.0
    idx = np.random.default_rng(seed).integers(0, a.size, size=(reps, a.size))
    d = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return diff, float(np.percentile(d, tail)), float(np.percentile(d, 100 - tail))


# ------------------------------------------------------------------------------ outcomes


@dataclass(frozen=True)
class Outcomes:
    """What every level really did on each question that has a row for all of ``levels``."""

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    families: tuple[str, ...]
    splits: tuple[str, ...]
    levels: tuple[str, ...]  # columns of ``correct`` and ``tokens``
    correct: np.ndarray  # [questions, levels] 0/1
    tokens: np.ndarray  # [questions, levels] completion tokens
    incomplete: tuple[str, ...] = field(default=())  # ids left out: some level has no row

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask: np.ndarray | Sequence[bool]) -> Outcomes:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (len(self.ids),):
            raise ValueError(f"mask of shape {m.shape} for {len(self.ids)} questions")

        def pick(xs: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(x for x, keep in zip(xs, m, strict=True) if keep)

        return Outcomes(pick(self.ids), pick(self.texts), pick(self.families), pick(self.splits), self.levels,
                        self.correct[m], self.tokens[m])

    def split(self, name: str) -> Outcomes:
        """The questions of split ``name``."""
        return self.subset([s == name for s in self.splits])

    def split_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for s in self.splits:
            sizes[s] = sizes.get(s, 0) + 1
        return sizes


def row_problem(row: object, required: Sequence[str] = ("id", "level", "correct", "completion_tokens")) -> str | None:
    """Why ``row`` is not a usable ``LevelResult`` row (``router/evaluation/runner.py``), or None.

    ``required`` keys must be present; every known key that is present must have its type: ``id``
    and ``level`` non-empty strings, ``correct`` a JSON boolean (``bool("false")`` is true),
    ``completion_tokens`` a whole number >= 0 (not NaN, not negative), and ``question``, ``family``
    and ``split`` strings.
    """
    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    missing = [k for k in required if k not in row]
    if missing:
        return f"missing {', '.join(repr(k) for k in missing)}"
    for key in ("id", "level"):
        if key in row and not (isinstance(row[key], str) and row[key]):
            return f"{key!r} must be a non-empty string, got {_shown(row[key])}"
    if "correct" in row and not isinstance(row["correct"], bool):
        return f"'correct' must be true or false, got {_shown(row['correct'])}"
    tokens = row.get("completion_tokens", 0)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        return f"'completion_tokens' must be a whole number >= 0, got {_shown(tokens)}"
    for key in ROW_TEXT_KEYS:
        if key in row and not isinstance(row[key], str):
            return f"{key!r} must be a string, got {_shown(row[key])}"
    return None


def rows_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file of rows (its caller names what the file is), or None."""
    if path.is_dir():
        return "is a directory; give a .jsonl file of rows"
    if not path.exists():
        return "does not exist"
    if not path.is_file():  # a device such as /dev/zero would be read forever
        return "is not a regular file"
    return None


def scan_rows(path: Path, required: Sequence[str]) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    """(line number, row) for each usable row of a results file (:func:`row_problem`, with
    ``required`` keys) and (line number, why) for every other non-blank line. Lines are decoded one
    by one: a line that is not UTF-8 (a write torn inside a character, or no results file at all)
    is one bad line, like a torn or foreign one. ``OSError`` is the caller's to report."""
    rows: list[tuple[int, dict]] = []
    bad: list[tuple[int, str]] = []
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad.append((lineno, "not UTF-8 text"))
                continue
            except (ValueError, RecursionError):
                bad.append((lineno, "not JSON"))
                continue
            if problem := row_problem(row, required):
                bad.append((lineno, problem))
            else:
                rows.append((lineno, row))
    return rows, bad


def _shown(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def collect_outcomes(rows: Iterable[Mapping], levels: Sequence[str]) -> Outcomes:
    """Outcome matrices of ``levels`` from ``LevelResult`` rows (``router/evaluation/runner.py``).

    The first row of a (question, level) wins; rows of a policy's own choice (level ``policy:...``)
    are left out. A question without a row for every one of ``levels`` is left out and named in
    ``incomplete``. A row that :func:`row_problem` finds fault with is refused (``ValueError``), and
    so is a question id that carries two different splits: the split of a question must be one
    fact, or fit and report sets could share it.
    """
    levels = tuple(levels)
    meta: dict[str, tuple[str, str, str]] = {}
    splits: dict[str, set[str]] = {}
    seen: dict[str, dict[str, tuple[float, float]]] = {}
    for n, row in enumerate(rows):
        if problem := row_problem(row):
            raise ValueError(f"result row {n} is not usable: {problem}")
        level = str(row["level"])
        qid = str(row["id"])
        splits.setdefault(qid, set()).add(str(row.get("split", "")))
        if level.startswith(POLICY_ROW_PREFIX):
            continue
        meta.setdefault(qid, (str(row.get("question", "")), str(row.get("family", "")), str(row.get("split", ""))))
        if level in levels:
            seen.setdefault(qid, {}).setdefault(level, (float(row["correct"]), float(row["completion_tokens"])))
    conflicts = {q: sorted(s) for q, s in splits.items() if len(s) > 1}
    if conflicts:
        shown = ", ".join(f"{q} ({' / '.join(s)})" for q, s in list(conflicts.items())[:5])
        raise ValueError(f"{len(conflicts)} question id(s) carry more than one split, e.g. {shown}; "
                         "a question must belong to one split")
    complete = [q for q in meta if len(seen.get(q, {})) == len(levels)]
    incomplete = tuple(q for q in meta if len(seen.get(q, {})) != len(levels))
    shape = (len(complete), len(levels))
    correct = np.array([[seen[q][lv][0] for lv in levels] for q in complete], dtype=np.float64).reshape(shape)
    tokens = np.array([[seen[q][lv][1] for lv in levels] for q in complete], dtype=np.float64).reshape(shape)
    return Outcomes(
        ids=tuple(complete),
        texts=tuple(meta[q][0] for q in complete),
        families=tuple(meta[q][1] for q in complete),
        splits=tuple(meta[q][2] for q in complete),
        levels=levels,
        correct=correct,
        tokens=tokens,
        incomplete=incomplete,
    )


def check_disjoint(fit_ids: Iterable[str], report_ids: Mapping[str, Iterable[str]]) -> None:
    """Raise ``ValueError`` naming the shared ids if any report set shares a question with the fit set
    (or with another report set)."""
    fit = set(fit_ids)
    problems = []
    seen: dict[str, str] = {}
    for name, ids in report_ids.items():
        ids = set(ids)
        shared = sorted(fit & ids)
        if shared:
            problems.append(f"{len(shared)} question(s) of report set '{name}' are in the fit set "
                            f"(e.g. {', '.join(shared[:3])})")
        for q in sorted(ids):
            if q in seen and seen[q] != name:
                problems.append(f"question {q} is in report sets '{seen[q]}' and '{name}'")
                break
            seen[q] = name
    if problems:
        raise ValueError("fit and report questions must be disjoint: " + "; ".join(problems))
