"""`router eval`: run compute levels, or a policy's own choice, over datasets; one JSONL row per (question, level).

    router eval --dataset gen:addition --dataset rg:gcd --levels single,self_consistency --out var/eval/a.jsonl
    router eval --dataset 'rg:basic_arithmetic?min_digits=2&max_digits=3' --n 100 --seed 7 \\
        --policy adaptive --route --out var/eval/adaptive.jsonl
    router eval --dataset jsonl:questions.jsonl --levels single --target 127.0.0.1:50051 --out var/eval/s.jsonl

Datasets (repeatable ``--dataset``; :mod:`router.evaluation.sources` documents them): ``gen:FAMILY``,
``rg:NAME[?key=value&...]`` (a reasoning-gym task with config overrides, graded by the task's own
scorer) and ``jsonl:PATH`` (``question``, ``answer``, optional ``id``, ``family``, ``kind``,
``choices``, ``checker``). ``--levels`` forces levels of the policy's ladder (row level = the
level); ``--route`` lets the policy decide (row level ``policy:NAME``, with the level it chose, the
difficulty and the predicted success it chose on). Both may be given together.

In process (default) the configured model runs here with the policy file's plans (``--policy-file``,
default the configured one); with ``--target host:port`` a running server answers through the
client and its own policies apply.

Resumable: rows already in ``--out`` for a (question id, level) are skipped and a torn last line
from a killed run is cut. Each row records the model, ``--max-new-tokens``, the policy's version (a
hash of its content) and what its level ran (``spec``: for a forced level, a hash of its strategy,
samples, sampling and options; for ``--route``, the policy's version). A file made with another
model or cap, or whose rows do not record them (an older router eval), is not resumed; nor is one
where a level this run repeats ran otherwise. A policy edit that leaves the levels being run as they
were (``router tune --write-policy`` moving a threshold or a cost) does not stop a resume, except of
``--route`` rows. Nor is a file resumed that has a line that is not a result row (another
file, an edit: the lines are named), that is a ``jsonl:`` dataset, or that has a question whose
text changed since its rows were written: exit 2, nothing changed (use a new ``--out``). ``--out`` is
checked before the model loads. Nothing is counted silently: a bad dataset line is reported as
``PATH:LINE: problem`` and skipped; a checker that raises, or a run the server refuses, is reported
with its line (or dataset position), written to ``<out stem>.errors.jsonl`` (the latest run's
errors) instead of the results, left out of every count and retried by the next run. Exit status:
0 when everything ran and was graded, 1 when anything was skipped for an error, 2 for a usage
error, 130 when interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from router.evaluation.runner import LevelResult, ProgressLine, ResultsScan, fix_tail, row_problem, scan_results
from router.evaluation.sources import CHECKERS, EvalItem, SpecError, load
from router.evaluation.targets import Answered, LevelError, Target
from router.policy.tuning import POLICY_ROW_PREFIX


class EvalError(Exception):
    """The run cannot start (or go on); the message says why and what to do."""


@dataclass
class Report:
    """What one ``router eval`` run did."""

    total: int = 0  # (question, level) pairs asked for
    already_done: int = 0  # found in the output file and skipped
    written: list[LevelResult] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # checker and run errors, not counted
    bad_lines: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # every row of this run's pairs, for the summary

    @property
    def checker_errors(self) -> int:
        return sum(e["stage"] == "check" for e in self.errors)

    @property
    def run_errors(self) -> int:
        return sum(e["stage"] == "run" for e in self.errors)

    @property
    def clean(self) -> bool:
        return not self.errors and not self.bad_lines


def errors_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.errors.jsonl")


# ------------------------------------------------------------------------------------ the output file

# Row fields that change answers besides the question and level: a file holds one value of each.
# What a level runs is checked per level instead (LevelResult.spec, _check_specs): a policy edit
# that leaves a level's plan as it was (a tuned threshold or cost) does not stop a resume.
SETTINGS: dict[str, str] = {
    "model": "the model (--model-dir, or the server's)",
    "max_new_tokens": "--max-new-tokens",
}


def _show(key: str, value: Any) -> str:
    return "0 (each level's own)" if key == "max_new_tokens" and value == 0 else repr(value)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_writable(out: Path) -> None:
    try:
        info = out.stat()
    except (FileNotFoundError, NotADirectoryError):
        parent = next(p for p in out.parents if p.exists() or p.is_symlink())
        if not parent.is_dir():
            raise EvalError(f"--out {out}: {parent} is a file, not a directory") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise EvalError(f"--out {out}: cannot create it, {parent} is not writable") from None
        return
    except OSError as exc:
        raise EvalError(f"--out {out}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise EvalError(f"--out {out} is a directory; give a file, e.g. {out / 'results.jsonl'}")
    if not stat.S_ISREG(info.st_mode):
        raise EvalError(f"--out {out} is not a regular file (a device, pipe or socket); give a results file")
    if not os.access(out, os.R_OK | os.W_OK):
        raise EvalError(f"--out {out}: not readable and writable")


def _lines(bad: list[tuple[int, str]]) -> str:
    shown = "; ".join(f"line {n}: {why}" for n, why in bad[:5])
    return shown + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")


def _error_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict) or entry.get("stage") not in ("run", "check"):
        return "not an error entry of router eval"
    return None


def check_out(out: Path, datasets: Sequence[Path] = ()) -> ResultsScan:
    """What ``out`` holds, after refusing (EvalError, nothing changed) an ``out`` that cannot be written,
    is a dataset file, is not a regular file, or has a line that is not a result row; the same goes
    for its errors file (:func:`errors_path`), which a run replaces."""
    for dataset in datasets:
        for path in (out, errors_path(out)):
            if _same_file(path, dataset):
                raise EvalError(f"--out {out}: {path} is the dataset jsonl:{dataset}; results would be written into "
                                "your questions. Choose another --out")
    _check_writable(out)
    errors = errors_path(out)
    try:
        scan = scan_results(out, row_problem)
        old_errors = scan_results(errors, _error_problem)
    except ValueError as exc:  # not a regular file
        raise EvalError(f"--out {out}: {exc}") from None
    except OSError as exc:
        raise EvalError(f"--out {out}: cannot read {exc.filename}: {exc.strerror}") from None
    if scan.bad:
        raise EvalError(f"{out}: {len(scan.bad)} line(s) are not result rows ({_lines(scan.bad)}): it is not a "
                        "results file of router eval, or it was edited. Nothing was changed: fix or remove those "
                        "lines, or write to a new --out")
    if old_errors.bad:
        raise EvalError(f"{errors} (where the errors of --out {out} go) is not an errors file of router eval "
                        f"({_lines(old_errors.bad)}). Nothing was changed: move it, or choose another --out")
    return scan


def file_settings(out: Path, scan: ResultsScan) -> dict[str, Any] | None:
    """The settings every row of ``out`` was made with (None: no rows); EvalError when rows do not record
    them or do not agree."""
    if not scan.rows:
        return None
    unknown = [(n, [k for k in SETTINGS if k not in row]) for n, row in scan.rows if not SETTINGS.keys() <= row.keys()]
    if unknown:
        n, keys = unknown[0]
        raise EvalError(f"{out}: {len(unknown)} row(s) (first on line {n}) do not record {', '.join(keys)} they were "
                        "made with (an older router eval wrote them), so resuming could mix models or settings in "
                        "one file. Nothing was changed: write to a new --out")
    first_n, first = scan.rows[0]
    for n, row in scan.rows[1:]:
        for key, what in SETTINGS.items():
            if row[key] != first[key]:
                raise EvalError(f"{out} already mixes settings: {what} is {_show(key, first[key])} on line {first_n} "
                                f"and {_show(key, row[key])} on line {n}. Nothing was changed: write to a new --out")
    return {key: first[key] for key in SETTINGS}


def _same_settings(out: Path, have: Mapping[str, Any], where: str, got: Mapping[str, Any]) -> None:
    for key, what in SETTINGS.items():
        if key in have and key in got and have[key] != got[key]:
            raise EvalError(f"{out} holds rows made with {what} {_show(key, have[key])} ({where}), and this run "
                            f"uses {_show(key, got[key])}: resuming would mix the two. Rerun with the settings the "
                            "file was made with to resume, or write to a new --out")


def _check_specs(out: Path, scan: ResultsScan, specs: Mapping[str, str], policy: str | None) -> None:
    """Rows already in ``out`` for a row label of this run must have run what this run will run
    (``specs``: label -> spec). Rows written before rows recorded it resume only under the same
    policy version (``policy``, name@version), the rule they were written under."""
    for n, row in scan.rows:
        label = row["level"]
        if label not in specs:
            continue  # not run now: neither reused nor changed
        if "spec" not in row:
            if policy is not None and row.get("policy") != policy:
                raise EvalError(f"{out} line {n} was written under policy {row.get('policy')!r} by an older router "
                                f"eval that did not record what each level ran, and this run uses {policy!r}: "
                                "rerun with that policy file to resume, or write to a new --out")
            continue
        if row["spec"] != specs[label]:
            if label.startswith(POLICY_ROW_PREFIX):
                what = (f"the policy's own choice was made under {row['spec']!r} (line {n}), and this run would route "
                        f"under {specs[label]!r}: the policy changed")
            else:
                what = (f"level '{label}' ran as {row['spec']!r} (line {n}), and this run would run it as "
                        f"{specs[label]!r}: its strategy, samples, sampling or options changed")
            raise EvalError(f"{out} holds rows where {what}, so resuming would mix the two. Rerun with the policy "
                            "the file was made with, or write to a new --out")


def runs_for(levels: Sequence[str], route_policy: str | None) -> list[tuple[str, str]]:
    """(row label, forced level) pairs: each forced level, then the policy's own choice (level "")."""
    runs = [(lv, lv) for lv in levels]
    if route_policy is not None:
        runs.append((POLICY_ROW_PREFIX + route_policy, ""))
    return runs


def _fatal_rpc(exc: BaseException) -> bool:
    """A gRPC error after which no other question could succeed (server gone, wrong service, no access)."""
    import grpc

    if not isinstance(exc, grpc.RpcError):
        return False
    return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED,
                          grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def _run_error(exc: BaseException) -> str | None:
    """The message of an error that concerns one question only (it is recorded and the run goes on)."""
    import grpc

    from router.errors import InvalidArgumentError

    if isinstance(exc, grpc.RpcError) and not _fatal_rpc(exc):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, InvalidArgumentError):
        return f"{exc.field}: {exc.description}"
    return None


def run_eval(
    items: Sequence[EvalItem],
    target: Target,
    runs: Sequence[tuple[str, str]],
    out: Path,
    *,
    policy: str = "",
    expect: Mapping[str, Any] | None = None,
    specs: Mapping[str, str] | None = None,
    on_row: Callable[[LevelResult | None, int, int], None] | None = None,
    log: TextIO = sys.stderr,
) -> Report:
    """Answer every (item, run) not yet in ``out``; append rows, record errors apart, and report.

    ``expect``: the settings (:data:`SETTINGS`) known before any question (``Target.settings``), and
    its ``policy`` (name@version). Old rows and new must all have the same settings. ``specs``: what
    each row label runs (``Target.specs``); old rows of this run's labels must have run the same.
    A mismatch is an EvalError before anything is written.
    """
    report = Report(total=len(items) * len(runs))
    scan = check_out(out)
    fixed = file_settings(out, scan)
    where = f"line {scan.rows[0][0]}" if scan.rows else ""
    if fixed is not None:
        _same_settings(out, fixed, where, expect or {})
    if specs is not None:
        _check_specs(out, scan, specs, (expect or {}).get("policy"))
    done: dict[tuple[str, str], dict[str, Any]] = {}
    repeated: list[int] = []  # lines of rows whose (id, level) an earlier line already has
    for n, row in scan.rows:
        if done.setdefault((row["id"], row["level"]), row) is not row:
            repeated.append(n)
    changed = [item for item in items for label, _ in runs
               if (row := done.get((item.question.id, label))) and row.get("question") != item.question.text]
    if changed:
        first = changed[0]
        raise EvalError(f"{out} has rows for {len({i.question.id for i in changed})} question id(s) whose text is not "
                        f"the dataset's now (first: '{first.question.id}' at {first.where}); write to a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fix_tail(out, scan) == "cut":
        log.write(f"{out}: cut a torn last line (a run killed mid-write); that row will run again\n")
    errors_path(out).unlink(missing_ok=True)  # every pair without a row is retried: old errors are superseded
    todo = []
    for item in items:
        for label, level in runs:
            key = (item.question.id, label)
            if key in done:
                report.already_done += 1
                report.rows.append(done[key])
            else:
                todo.append((item, label, level))
    if report.already_done:
        log.write(f"{out}: {report.already_done} of {report.total} rows already there, skipped\n")
    if repeated:  # files joined by hand, say: say so rather than count a question twice or pick silently
        log.write(f"{out}: {len(repeated)} row(s) repeat an earlier row's (question id, level), first on line "
                  f"{repeated[0]}; the earlier row of each is the one used\n")
    with out.open("a", encoding="utf-8") as f:
        for i, (item, label, level) in enumerate(todo, 1):
            row = _one(item, target, label, level, policy, report, out, log)
            if row is not None:
                settings = {key: getattr(row, key) for key in SETTINGS}
                if fixed is None:  # a new file: its first row fixes them (a server says its model only now)
                    fixed, where = settings, "this run's first row"
                _same_settings(out, fixed, where, settings)
                if specs is not None and row.spec != specs.get(label, row.spec):  # e.g. a server's policy reloaded
                    raise EvalError(f"{target.name} ran '{label}' as {row.spec!r}, not as {specs[label]!r} as it said "
                                    f"before the run: its policy changed during the run. Rows so far are in {out}; "
                                    "rerun the same command to resume with the new policy, or write to a new --out")
                line = row.to_json()
                f.write(line + "\n")
                f.flush()
                report.written.append(row)
                report.rows.append(json.loads(line))
            if on_row is not None:
                on_row(row, i, len(todo))
    return report


def _one(item: EvalItem, target: Target, label: str, level: str, policy: str, report: Report, out: Path,
         log: TextIO) -> LevelResult | None:
    """One question at one level: its row, or None after recording why there is none."""
    q = item.question
    try:
        answered = target.answer(q.text, policy=policy, level=level)
    except LevelError as exc:
        raise EvalError(f"{exc}. No question can run at it: fix the policy file (rows so far are in {out})") from None
    except Exception as exc:
        if _fatal_rpc(exc):
            raise EvalError(f"{target.name}: {exc.code().name}: {exc.details()}; rows so far are in {out}, "  # type: ignore[attr-defined]
                            "rerun the same command to resume") from None
        message = _run_error(exc)
        if message is None:
            raise
        _record(report, out, log, item, label, "run", message, "")
        return None
    try:
        answer, correct = item.grade(answered.text)
    except Exception as exc:  # a checker is user-extensible code: whatever it raises is reported, not counted
        _record(report, out, log, item, label, "check", f"checker '{item.checker}' raised {type(exc).__name__}: {exc}",
                answered.text)
        return None
    return _row(item, label, answer, bool(correct), answered)


def _record(report: Report, out: Path, log: TextIO, item: EvalItem, label: str, stage: str, message: str,
            response: str) -> None:
    q = item.question
    what = "not graded" if stage == "check" else "not run"
    log.write(f"\n{item.where}: {message} (id {q.id}, level {label}); {what}, not counted\n")
    entry = {"id": q.id, "level": label, "where": item.where, "stage": stage, "error": message, "response": response}
    report.errors.append(entry)
    with errors_path(out).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _row(item: EvalItem, label: str, answer: str, correct: bool, a: Answered) -> LevelResult:
    q = item.question
    return LevelResult(
        id=q.id, family=q.family, source=q.source, seed=q.seed, split=item.split, question=q.text, expected=q.answer,
        level=label, correct=correct, answer=answer, prompt_tokens=a.prompt_tokens,
        completion_tokens=a.completion_tokens, samples=a.samples, model_calls=a.model_calls, latency_ms=a.latency_ms,
        truncated=a.truncated, decision_level=a.decision_level, difficulty=a.difficulty, predicted=a.predicted,
        policy=a.policy, reason=a.reason, checker=item.checker, model=a.model, max_new_tokens=a.max_new_tokens,
        spec=a.spec,
    )


# ------------------------------------------------------------------------------------ summary


def summarize(report: Report, labels: Sequence[str]) -> str:
    """Per level: n graded, accuracy, mean completion tokens, mean samples, p50 latency; then what was skipped."""
    lines = [f"{'level':24s} {'n':>5s} {'accuracy':>8s} {'tokens/q':>9s} {'samples/q':>9s} {'p50 ms':>9s}"]
    for label in labels:
        rows = [r for r in report.rows if r["level"] == label]
        if not rows:
            lines.append(f"{label:24s} {0:5d} {'-':>8s}")
            continue
        n = len(rows)
        acc = sum(r["correct"] is True for r in rows) / n
        tokens = sum(r["completion_tokens"] for r in rows) / n
        samples = sum(r["samples"] for r in rows) / n
        p50 = statistics.median(r["latency_ms"] for r in rows)
        lines.append(f"{label:24s} {n:5d} {acc:8.3f} {tokens:9.1f} {samples:9.2f} {p50:9.0f}")
        if label.startswith(POLICY_ROW_PREFIX):
            chose = Counter(r.get("decision_level", "") for r in rows)
            mix = ", ".join(f"{lv} {c / n:.0%}" for lv, c in chose.most_common())
            lines.append(f"{'':24s} chose: {mix}")
    graded = len(report.rows)
    lines.append(
        f"graded {graded} of {report.total} ({len(report.written)} new, {report.already_done} already done); "
        f"checker errors {report.checker_errors}; run errors {report.run_errors}; "
        f"skipped {len(report.bad_lines)} bad line{'s' if len(report.bad_lines) != 1 else ''}"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="router eval", description=__doc__.splitlines()[0],
                                 epilog="\n".join(__doc__.splitlines()[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", required=True, metavar="SPEC",
                    help="gen:FAMILY | rg:NAME[?key=value&...] | jsonl:PATH (repeatable)")
    ap.add_argument("--n", type=int, default=None,
                    help="questions per dataset (default: 50 generated or reasoning-gym, every JSONL line)")
    ap.add_argument("--seed", type=int, default=0, help="seed of generated and reasoning-gym questions")
    ap.add_argument("--levels", default="", help="comma-separated levels to force, e.g. single,self_consistency")
    ap.add_argument("--policy", default="", help="whose ladder --levels are taken from, and who decides with --route "
                                                  "(default: the default policy)")
    ap.add_argument("--route", action="store_true", help="also run the policy's own choice (row level policy:NAME)")
    ap.add_argument("--target", default="", help="host:port of a running server (default: run in this process)")
    ap.add_argument("--timeout", type=float, default=300.0, help="per-request deadline with --target, seconds")
    ap.add_argument("--policy-file", type=Path, default=None, help="in process: policies (default: configured)")
    ap.add_argument("--model-dir", type=Path, default=None, help="in process: model directory (default: configured)")
    ap.add_argument("--max-new-tokens", type=int, default=0,
                    help="cap every level's new tokens, at most the model's context (default 0: the level's)")
    ap.add_argument("--out", type=Path, required=True, help="results JSONL (appended to; resumable)")
    ap.add_argument("--quiet", action="store_true", help="no progress line")
    return ap


def _in_process(args: argparse.Namespace, need_scorer: bool) -> Target:
    from router.config import Settings
    from router.engine.manifest import read_manifest
    from router.evaluation.targets import InProcess
    from router.policy.loader import load_policies

    settings = Settings()
    policies = load_policies(args.policy_file or settings.policy_file, settings.server.default_max_new_tokens)
    model_dir = args.model_dir or settings.model_dir()
    context = read_manifest(model_dir).context_length
    if args.max_new_tokens > context:  # checked before the model loads, not once per question
        raise EvalError(f"--max-new-tokens {args.max_new_tokens} is more than {model_dir.name}'s context holds "
                        f"({context} tokens)")
    scorer = None
    if need_scorer and settings.difficulty_dir:
        from router.difficulty.scorer import DifficultyScorer

        scorer = DifficultyScorer(settings.difficulty_dir)
    engine = settings.load_engine(model_dir)
    return InProcess(engine, policies, scorer, max_new_tokens=args.max_new_tokens)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    levels = [lv.strip() for lv in args.levels.split(",") if lv.strip()]
    if not levels and not args.route:
        print("router eval: give --levels, --route or both", file=sys.stderr)
        return 2
    if len(set(levels)) != len(levels):
        print(f"router eval: a level is given twice in --levels {args.levels}", file=sys.stderr)
        return 2
    if args.target and (args.policy_file or args.model_dir):
        print("router eval: --policy-file and --model-dir are for in-process runs; the server at --target uses "
              "its own", file=sys.stderr)
        return 2
    if args.n is not None and args.n < 1:
        print("router eval: --n must be at least 1", file=sys.stderr)
        return 2
    if not 0 <= args.max_new_tokens < 2**32:
        print(f"router eval: --max-new-tokens must be at least 1 (or 0: each level's own), got {args.max_new_tokens}",
              file=sys.stderr)
        return 2
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        print(f"router eval: --timeout must be a positive number of seconds, got {args.timeout}", file=sys.stderr)
        return 2
    try:
        loaded = load(args.dataset, args.n, args.seed)
        check_out(args.out, [Path(spec[len("jsonl:"):]) for spec in args.dataset if spec.startswith("jsonl:")])
    except (SpecError, EvalError) as exc:
        print(f"router eval: {exc}", file=sys.stderr)
        return 2
    for problem in loaded.bad_lines:
        print(problem, file=sys.stderr)
    if loaded.bad_lines:
        print(f"skipping {len(loaded.bad_lines)} bad line(s) (checkers: {', '.join(CHECKERS)})", file=sys.stderr)
    if not loaded.items:
        print("router eval: no questions to run", file=sys.stderr)
        return 1
    from router.errors import RouterError

    client = None
    try:
        if args.target:
            from router.client import RouterClient
            from router.evaluation.targets import Remote

            client = RouterClient(args.target, timeout_s=args.timeout)
            target: Target = Remote(client, max_new_tokens=args.max_new_tokens)
        else:
            target = _in_process(args, need_scorer=args.route)
        try:
            policy = target.check(args.policy, levels, route=args.route)
            expect = target.settings(policy)
            runs = runs_for(levels, policy if args.route else None)
            specs = target.specs(policy, runs)
        except ValueError as exc:
            raise EvalError(str(exc)) from None
        progress = None if args.quiet else ProgressLine(sys.stderr)
        report = run_eval(loaded.items, target, runs, args.out, policy=policy, expect=expect, specs=specs,
                          on_row=progress)
    except (EvalError, RouterError) as exc:
        print(f"router eval: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out was checked, but a disk can fill or a directory change under a run
        print(f"router eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nrouter eval: interrupted; rows so far are in {args.out}, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except Exception as exc:
        import grpc

        if isinstance(exc, grpc.RpcError):
            print(f"router eval: {args.target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
        raise
    finally:
        if client is not None:
            client.close()
    report.bad_lines = loaded.bad_lines
    print(summarize(report, [label for label, _ in runs]))
    if report.errors:
        print(f"errors are in {errors_path(args.out)}")
    return 0 if report.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
