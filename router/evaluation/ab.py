"""A/B report of an experiment from the decision store: per-arm quality, cost and latency, and each arm vs control.

The metric is the mean feedback score of one key (``correct`` by default) over the answered
requests that have one. Methods, chosen to be standard and checkable against scipy:

- Per-arm interval on the mean score: **Wilson** score interval when every score is 0 or 1 (a
  proportion: it stays inside [0, 1] and keeps its coverage near 0 and 1 and at small n, where
  the normal "Wald" interval does not), otherwise a **Student t** interval on the mean.
- Arm vs control: **Welch's t-test** (no equal-variance assumption; the arms differ in how much
  compute they spend, so their variances differ too): difference of means, its interval with the
  Welch–Satterthwaite degrees of freedom, and the two-sided p-value. The interval excludes 0
  exactly when p < alpha. For 0/1 scores this is the unpooled two-proportion test up to the t
  instead of normal quantile.
- Verdict: ``better`` / ``worse`` when p < alpha (higher score is better), else ``not yet
  significant`` with the scored requests per arm that would detect the observed difference at
  alpha and the given power (normal approximation, equal arm sizes):
  ``n = (z[1-alpha/2] + z[power])**2 * (s_arm**2 + s_control**2) / delta**2``; when no difference
  is observed, the minimum detectable effect at the current sample sizes instead.

Tokens, latency (p50/p95 of ``total_ms``, linear interpolation) and the degraded share are over
every answered (``status = 'ok'``) request of the arm, scored or not. The store file is opened
read-only, so a report can run while the server writes.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from router.policy import tuning

__all__ = [
    "BETTER", "NOT_SIGNIFICANT", "WORSE", "ArmData", "ArmStats", "Comparison", "Report", "ReportError", "ScoreSummary",
    "Welch", "ab_report", "build_report", "compare", "default_control", "default_png_name", "experiments",
    "format_table", "load_arms", "minimum_detectable_effect", "plot_report", "required_n", "score_summary",
    "summarize_arm", "t_interval", "welch_test", "wilson_interval",
]

BETTER, WORSE, NOT_SIGNIFICANT = "better", "worse", "not yet significant"


class ReportError(Exception):
    """The report cannot be made from this store (missing file, no such experiment, no feedback...)."""


# -- statistics (pure) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreSummary:
    """Mean score of one arm with its interval; ``method`` is ``wilson`` or ``t``."""

    n: int
    mean: float
    sd: float  # sample standard deviation (ddof=1); nan for n < 2
    low: float
    high: float
    method: str


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of ``mean(arm) - mean(control)``."""

    diff: float
    low: float
    high: float
    t: float
    df: float
    p_value: float
    se: float


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (no continuity correction)."""
    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within [0, n], got {successes} of {n}")
    return tuning.wilson_interval(successes, n, z=float(stats.norm.ppf(0.5 + confidence / 2)))


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student t interval on the mean of ``values``; (nan, nan) for fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    mean = float(x.mean())
    se = float(x.std(ddof=1)) / math.sqrt(x.size)
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * se
    return mean - half, mean + half


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def score_summary(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> ScoreSummary | None:
    """Mean, sd and interval of an arm's scores (Wilson for 0/1 scores, else t); ``None`` when empty."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return None
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if x.size > 1 else math.nan
    if _is_binary(x):
        low, high = wilson_interval(int(x.sum()), int(x.size), confidence)
        return ScoreSummary(int(x.size), mean, sd, low, high, "wilson")
    low, high = t_interval(x, confidence)
    return ScoreSummary(int(x.size), mean, sd, low, high, "t")


def welch_test(
    arm: Sequence[float] | np.ndarray, control: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> Welch | None:
    """Welch's t-test of ``mean(arm) - mean(control)``; ``None`` when an arm has fewer than 2 values.

    When both arms have zero variance the test is degenerate: p is 1 for equal means, 0 otherwise.
    """
    a, c = np.asarray(arm, dtype=float), np.asarray(control, dtype=float)
    if a.size < 2 or c.size < 2:
        return None
    diff = float(a.mean() - c.mean())
    va, vc = float(a.var(ddof=1)) / a.size, float(c.var(ddof=1)) / c.size
    se = math.sqrt(va + vc)
    if se == 0.0:
        return Welch(diff, diff, diff, math.copysign(math.inf, diff) if diff else 0.0, math.inf,
                     0.0 if diff else 1.0, 0.0)
    df = (va + vc) ** 2 / (va**2 / (a.size - 1) + vc**2 / (c.size - 1))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Welch(diff, diff - half, diff + half, t, df, p, se)


def _z_total(alpha: float, power: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def required_n(sd_arm: float, sd_control: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Scored requests per arm for a two-sided test at ``alpha`` to detect ``delta`` with ``power``.

    Normal approximation with equal arm sizes; ``None`` when ``delta`` is 0 or a standard deviation
    is unknown.
    """
    if delta == 0 or not math.isfinite(sd_arm) or not math.isfinite(sd_control):
        return None
    return max(2, math.ceil(_z_total(alpha, power) ** 2 * (sd_arm**2 + sd_control**2) / delta**2))


def minimum_detectable_effect(
    sd_arm: float, sd_control: float, n_arm: int, n_control: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest absolute difference the current sample sizes detect at ``alpha`` with ``power``."""
    if n_arm < 1 or n_control < 1:
        return math.inf
    return _z_total(alpha, power) * math.sqrt(sd_arm**2 / n_arm + sd_control**2 / n_control)


def _percentile(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]  # a request without timings does not count
    return float(np.percentile(x, q)) if x.size else math.nan


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


# -- per arm and against control -------------------------------------------------------------------
@dataclass(frozen=True)
class ArmStats:
    """One arm: volume, quality (mean score with interval), cost and latency."""

    arm: str
    requests: int  # answered (status ok)
    cancelled: int
    scored: int  # answered requests with a score for the key
    score: ScoreSummary | None
    completion_tokens: float  # mean per answered request
    total_tokens: float  # mean prompt + completion tokens per answered request
    latency_p50_ms: float
    latency_p95_ms: float
    degraded_share: float


@dataclass(frozen=True)
class Comparison:
    """One arm against control: the score difference, cost differences and the verdict."""

    arm: str
    control: str
    welch: Welch | None
    verdict: str  # better / worse / not yet significant
    detail: str  # the verdict in a sentence
    required_n: int | None  # scored requests per arm to detect the observed difference
    mde: float | None  # minimum detectable effect at the current sample sizes
    completion_tokens_change: float | None  # relative, e.g. 0.25 = +25 %
    total_tokens_change: float | None
    latency_p50_change: float | None


def summarize_arm(
    arm: str,
    scores: Sequence[float] | np.ndarray,
    *,
    completion_tokens: Sequence[float] | np.ndarray,
    prompt_tokens: Sequence[float] | np.ndarray,
    total_ms: Sequence[float] | np.ndarray,
    degraded: Sequence[float] | np.ndarray,
    cancelled: int = 0,
    confidence: float = 0.95,
) -> ArmStats:
    """Statistics of one arm from its scores and its answered requests' columns (one value per request)."""
    comp = np.asarray(completion_tokens, dtype=float)
    prompt = np.asarray(prompt_tokens, dtype=float)
    lat = np.asarray(total_ms, dtype=float)
    deg = np.asarray(degraded, dtype=float)
    if not comp.size == prompt.size == lat.size == deg.size:
        raise ValueError("the per-request columns must have one value per answered request")
    s = np.asarray(scores, dtype=float)
    return ArmStats(
        arm=arm, requests=int(comp.size), cancelled=cancelled, scored=int(s.size),
        score=score_summary(s, confidence), completion_tokens=_mean(comp), total_tokens=_mean(comp + prompt),
        latency_p50_ms=_percentile(lat, 50), latency_p95_ms=_percentile(lat, 95), degraded_share=_mean(deg),
    )


def _relative(new: float, base: float) -> float | None:
    if not (math.isfinite(new) and math.isfinite(base)) or base == 0:
        return None
    return new / base - 1


def compare(
    arm: ArmStats,
    control: ArmStats,
    arm_scores: Sequence[float] | np.ndarray,
    control_scores: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Comparison:
    """``arm`` against ``control``: Welch's test on the scores, the verdict, and cost changes."""
    welch = welch_test(arm_scores, control_scores, 1 - alpha)
    changes = {
        "completion_tokens_change": _relative(arm.completion_tokens, control.completion_tokens),
        "total_tokens_change": _relative(arm.total_tokens, control.total_tokens),
        "latency_p50_change": _relative(arm.latency_p50_ms, control.latency_p50_ms),
    }
    if welch is None:
        detail = (f"{NOT_SIGNIFICANT}: needs at least 2 scored requests in each arm "
                  f"(now {arm.scored} / {control.scored} in {arm.arm} / {control.arm})")
        return Comparison(arm.arm, control.arm, None, NOT_SIGNIFICANT, detail, None, None, **changes)
    assert arm.score is not None and control.score is not None
    sd_a, sd_c = arm.score.sd, control.score.sd
    mde = minimum_detectable_effect(sd_a, sd_c, arm.scored, control.scored, alpha, power)
    if welch.p_value < alpha:
        verdict = BETTER if welch.diff > 0 else WORSE
        detail = f"{verdict}: {welch.diff:+.3f} (p {_p(welch.p_value)})"
        return Comparison(arm.arm, control.arm, welch, verdict, detail, None, mde, **changes)
    scale = max(1.0, abs(arm.score.mean), abs(control.score.mean))
    need = None if abs(welch.diff) <= 1e-12 * scale else required_n(sd_a, sd_c, welch.diff, alpha, power)
    conditions = f"at alpha = {alpha:g} with {power:.0%} power"
    if need is None and not mde > 0:
        detail = f"{NOT_SIGNIFICANT}: no difference and no variation in the scores yet; collect more feedback"
    elif need is None:
        detail = (f"{NOT_SIGNIFICANT}: no difference observed; these samples would detect a difference of "
                  f"±{mde:.3f} {conditions}")
    else:
        detail = (f"{NOT_SIGNIFICANT}: about {need} scored requests per arm would detect {welch.diff:+.3f} "
                  f"{conditions} (now {arm.scored} / {control.scored})")
    return Comparison(arm.arm, control.arm, welch, NOT_SIGNIFICANT, detail, need, mde, **changes)


def _p(p: float) -> str:
    """``< 0.001`` or ``= 0.042``."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


# -- the report --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmData:
    """What the store holds for one arm: scores, and one entry per answered request in each column."""

    scores: np.ndarray
    completion_tokens: np.ndarray
    prompt_tokens: np.ndarray
    total_ms: np.ndarray
    degraded: np.ndarray
    cancelled: int = 0


@dataclass(frozen=True)
class Report:
    """An experiment's A/B report."""

    experiment: str
    key: str
    control: str
    alpha: float
    power: float
    arms: tuple[ArmStats, ...]
    comparisons: tuple[Comparison, ...]
    db: str = ""
    notes: tuple[str, ...] = field(default=())

    def arm(self, name: str) -> ArmStats:
        """The statistics of arm ``name``."""
        return next(a for a in self.arms if a.arm == name)

    def comparison(self, name: str) -> Comparison:
        """Arm ``name`` against control."""
        return next(c for c in self.comparisons if c.arm == name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (nan and infinities become ``None``)."""
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def default_control(arms: Iterable[str]) -> str:
    """The arm named ``control`` if there is one, else the alphabetically first."""
    names = sorted(arms)
    if not names:
        raise ReportError("the experiment has no arms")
    return "control" if "control" in names else names[0]


def build_report(
    experiment: str,
    data: dict[str, ArmData],
    *,
    key: str = "correct",
    control: str | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    db: str = "",
    notes: Sequence[str] = (),
) -> Report:
    """The report of ``experiment`` from each arm's data (pure: no store access)."""
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ReportError(f"alpha and power must be within (0, 1), got {alpha} and {power}")
    control = control or default_control(data)
    if control not in data:
        raise ReportError(f"no arm {control!r} in experiment {experiment!r}; arms: {', '.join(sorted(data))}")
    if not any(d.scores.size for d in data.values()):
        raise ReportError(f"no feedback with key {key!r} and a score on the answered requests of "
                          f"experiment {experiment!r}")
    names = [control, *sorted(n for n in data if n != control)]
    arms = {
        n: summarize_arm(n, data[n].scores, completion_tokens=data[n].completion_tokens,
                         prompt_tokens=data[n].prompt_tokens, total_ms=data[n].total_ms,
                         degraded=data[n].degraded, cancelled=data[n].cancelled, confidence=1 - alpha)
        for n in names
    }
    comparisons = tuple(
        compare(arms[n], arms[control], data[n].scores, data[control].scores, alpha, power) for n in names[1:]
    )
    if not comparisons:
        notes = (*notes, f"only arm {control!r} has requests in experiment {experiment!r}, so there is nothing to "
                 "compare yet: send traffic with unit ids that hash to the other arms")
    return Report(experiment, key, control, alpha, power, tuple(arms.values()), comparisons, db, tuple(notes))


# -- reading the store -------------------------------------------------------------------------------
def _connect(db: Path | str) -> sqlite3.Connection:
    path = Path(db)
    if path.is_dir():
        raise ReportError(f"{path} is a directory, not a store file")
    if not path.is_file():
        raise ReportError(f"no store at {path}")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"cannot read {path} as a decision store: {exc}") from exc
    if not columns:
        conn.close()
        raise ReportError(f"{path} has no decisions table: is it a router store?")
    if "status" not in columns:
        conn.close()
        raise ReportError(f"{path} has an older schema: open it with the router once to migrate it")
    return conn


def experiments(db: Path | str) -> list[tuple[str, int, float]]:
    """``(experiment, decisions, last created_at)`` of every experiment in the store, most recent first."""
    conn = _connect(db)
    try:
        return conn.execute(
            "SELECT experiment, COUNT(*), MAX(created_at) FROM decisions WHERE experiment != '' "
            "GROUP BY experiment ORDER BY MAX(created_at) DESC, experiment"
        ).fetchall()
    finally:
        conn.close()


def load_arms(db: Path | str, experiment: str, key: str = "correct") -> dict[str, ArmData]:
    """Each arm's scores for ``key`` and per-request columns, read from the store file (read-only)."""
    conn = _connect(db)
    try:
        rows = conn.execute(
            "SELECT arm, status, COALESCE(completion_tokens, 0), COALESCE(prompt_tokens, 0), total_ms, "
            "COALESCE(degraded, 0) FROM decisions WHERE experiment = ?", (experiment,)
        ).fetchall()
        scores = conn.execute(
            "SELECT d.arm, f.score FROM feedback f JOIN decisions d ON d.request_id = f.request_id "
            "WHERE d.experiment = ? AND d.status = 'ok' AND f.key = ? AND f.score IS NOT NULL",
            (experiment, key),
        ).fetchall()
        keys = [] if scores else [r[0] for r in conn.execute(
            "SELECT DISTINCT f.key FROM feedback f JOIN decisions d ON d.request_id = f.request_id "
            "WHERE d.experiment = ? AND f.score IS NOT NULL ORDER BY f.key", (experiment,))]
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"cannot read {db}: {exc}") from exc
    finally:
        conn.close()
    if not rows:
        raise ReportError(f"no decisions for experiment {experiment!r} in {db}")
    if not scores:
        known = f"scored keys here: {', '.join(keys)}" if keys else "it has no scored feedback at all"
        raise ReportError(f"no feedback with key {key!r} and a score for experiment {experiment!r} ({known})")
    by_arm: dict[str, list[tuple]] = {}
    for row in rows:
        by_arm.setdefault(row[0], []).append(row)
    out: dict[str, ArmData] = {}
    for arm, arm_rows in by_arm.items():
        ok = [r for r in arm_rows if r[1] == "ok"]
        out[arm] = ArmData(
            scores=np.array([s for a, s in scores if a == arm], dtype=float),
            completion_tokens=np.array([r[2] for r in ok], dtype=float),
            prompt_tokens=np.array([r[3] for r in ok], dtype=float),
            total_ms=np.array([math.nan if r[4] is None else r[4] for r in ok], dtype=float),
            degraded=np.array([r[5] for r in ok], dtype=float),
            cancelled=len(arm_rows) - len(ok),
        )
    return out


def ab_report(
    db: Path | str,
    experiment: str | None = None,
    *,
    key: str = "correct",
    control: str | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Report:
    """The A/B report of ``experiment`` (default: the most recent one) in the store file ``db``."""
    found = experiments(db)
    if not found:
        raise ReportError(f"no decision in {db} belongs to an experiment (enable one in the policy file)")
    names = [name for name, _, _ in found]
    notes: list[str] = []
    if experiment is None:
        experiment = names[0]
        if len(names) > 1:
            notes.append(f"experiment {experiment!r} is the most recent of {len(names)}: {', '.join(names)}")
    elif experiment not in names:
        raise ReportError(f"no experiment {experiment!r} in {db}; experiments: {', '.join(names)}")
    data = load_arms(db, experiment, key)
    return build_report(experiment, data, key=key, control=control, alpha=alpha, power=power, db=str(db),
                        notes=notes)


# -- text and PNG ------------------------------------------------------------------------------------
def _f(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.0%}"


def _share(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.1%}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    last = len(header) - 1

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if i < left or i == last else c.rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return [line(header), *(line(r) for r in rows)]


def format_table(report: Report) -> str:
    """The report as plain text: per-arm table, then each arm against control with its verdict."""
    level = f"{1 - report.alpha:.0%}"
    methods = sorted({a.score.method for a in report.arms if a.score is not None})
    lines = [
        f"experiment {report.experiment} · metric: mean '{report.key}' feedback score · control arm: "
        f"{report.control} · alpha {report.alpha:g}" + (f" · store {report.db}" if report.db else ""),
        "",
    ]
    arm_rows = []
    for a in report.arms:
        s = a.score
        ci = "-" if s is None or not math.isfinite(s.low) else f"[{s.low:.3f}, {s.high:.3f}]"
        arm_rows.append([
            a.arm + (" (control)" if a.arm == report.control != "control" else ""), str(a.requests), str(a.scored),
            _f(s.mean if s else None, ".3f"), ci, _f(a.completion_tokens, ".1f"), _f(a.total_tokens, ".1f"),
            _f(a.latency_p50_ms, ".0f"), _f(a.latency_p95_ms, ".0f"), _share(a.degraded_share),
        ])
    lines += _table(["arm", "requests", "scored", "score", f"{level} CI", "compl tok", "total tok", "p50 ms",
                     "p95 ms", "degraded"], arm_rows, left=1)
    if report.comparisons:
        lines.append("")
        cmp_rows = []
        for c in report.comparisons:
            w = c.welch
            cmp_rows.append([
                f"{c.arm} vs {c.control}", _f(w.diff if w else None, "+.3f"),
                "-" if w is None else f"[{w.low:+.3f}, {w.high:+.3f}]",
                "-" if w is None else _p(w.p_value).removeprefix("= "),
                _pct(c.completion_tokens_change), _pct(c.latency_p50_change), c.detail,
            ])
        lines += _table(["comparison", "Δ score", f"{level} CI", "p", "Δ tokens", "Δ p50", "verdict"],
                        cmp_rows, left=1)
    lines += ["", f"score CI: {' / '.join(_METHODS[m] for m in methods)}; "
              "Δ score: Welch's t-test; Δ tokens: completion tokens per request, relative to control"]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


_METHODS = {"wilson": "Wilson (0/1 scores)", "t": "Student t on the mean"}


def default_png_name(experiment: str) -> str:
    """``ab_<experiment>.png`` with anything but letters, digits, ``.``, ``_`` and ``-`` replaced."""
    return f"ab_{re.sub(r'[^A-Za-z0-9._-]', '_', experiment)}.png"


def plot_report(report: Report, path: Path | str) -> Path:
    """Write a PNG: mean score with its interval, tokens per request, and latency p50/p95, per arm.

    Needs matplotlib (the ``eval`` extra); uses no pyplot state, so it is safe in any process.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ReportError("the PNG needs matplotlib: pip install 'router[eval]' (or pass --no-png)") from exc
    names = [a.arm for a in report.arms]
    x = np.arange(len(names))
    colors = ["#4c72b0" if n == report.control else "#dd8452" for n in names]
    fig = Figure(figsize=(4.2 * 3, 4.2), dpi=100, layout="constrained")
    ax_score, ax_tokens, ax_latency = fig.subplots(1, 3)

    level = f"{1 - report.alpha:.0%}"
    for i, a in enumerate(report.arms):
        s = a.score
        if s is None or not math.isfinite(s.mean):
            continue
        lo, hi = (s.low, s.high) if math.isfinite(s.low) else (s.mean, s.mean)
        ax_score.errorbar([i], [s.mean], yerr=[[s.mean - lo], [hi - s.mean]], fmt="o", capsize=6, color=colors[i])
        if a.arm == report.control:
            label = "control"
            ax_score.axhline(s.mean, color=colors[i], linestyle="--", linewidth=0.8, alpha=0.6)
        else:
            c = report.comparison(a.arm)
            label = c.verdict if c.welch is None else f"{c.verdict}\np {_p(c.welch.p_value)}"
        ax_score.annotate(f"{s.mean:.3f}\n{label}", (i, hi), textcoords="offset points", xytext=(0, 6),
                          ha="center", fontsize=8)
    ax_score.set_title(f"mean '{report.key}' score, {level} CI")
    ax_score.set_xticks(x, names)
    ax_score.set_xlim(-0.6, len(names) - 0.4)
    ax_score.margins(y=0.25)

    comp = [a.completion_tokens for a in report.arms]
    prompt = [a.total_tokens - a.completion_tokens for a in report.arms]
    ax_tokens.bar(x, prompt, color="#bbbbbb", label="prompt")
    ax_tokens.bar(x, comp, bottom=prompt, color=colors, label="completion")
    ax_tokens.set_title("mean tokens per request")
    ax_tokens.set_xticks(x, names)
    ax_tokens.legend(fontsize=8)

    width = 0.38
    ax_latency.bar(x - width / 2, [a.latency_p50_ms for a in report.arms], width, color=colors, label="p50")
    ax_latency.bar(x + width / 2, [a.latency_p95_ms for a in report.arms], width, color=colors, alpha=0.5,
                   label="p95")
    ax_latency.set_title("latency (ms)")
    ax_latency.set_xticks(x, names)
    ax_latency.legend(fontsize=8)

    fig.suptitle(f"A/B experiment {report.experiment!r}, control arm {report.control!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
