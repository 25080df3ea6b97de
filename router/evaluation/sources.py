"""Evaluation datasets from command-line specs, each question with the checker that grades it.

Specs (``router eval --dataset SPEC``, repeatable):

``gen:FAMILY``
    A generated family (:data:`router.evaluation.datasets.FAMILIES`); ids ``FAMILY-SEED-i``, the
    same questions ``router difficulty labels`` uses for that seed. Checker ``number``.
``rg:NAME[?key=value&...]``
    A reasoning-gym task with its configuration: :data:`~router.evaluation.datasets.REASONING_GYM`'s
    settings for NAME when it has them, else the task's defaults, then the overrides, converted
    to the config field's type (``operators=+,-`` is a list, ``allow_negation=false`` a bool).
    ``seed`` and ``size`` come from ``--seed`` and ``--n``. Ids are ``rg-NAME-SEED-i`` for the
    project's own configuration (the labels' ids) and ``rg-NAME~HASH-SEED-i`` with a hash of the
    configuration otherwise, so a changed configuration never resumes onto other questions.
    Graded by the task's own scorer (checker ``rg``).
``jsonl:PATH``
    One question per line: ``question`` and ``answer`` required; optional ``id`` (else
    ``jsonl:STEM:LINE``), ``family``, ``kind`` (an answer kind of
    :func:`router.verifiers.answers.extract_answer`), ``choices`` and ``checker`` (a name in
    :data:`CHECKERS`; default ``number`` when the answer is a number, else ``exact``). The file
    is UTF-8 (a byte order mark is allowed); a line that is not such an object (not UTF-8, not
    JSON, a number that is not finite) is reported as ``PATH:LINE: problem`` and never run.

A checker takes the model's response and returns (extracted answer, correct?). It may raise: the
caller reports that and leaves the question out of every count.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import json
import math
import stat
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from router.evaluation.datasets import FAMILIES, REASONING_GYM, Question, generated, split_of
from router.verifiers.answers import AnswerKind, answers_equal, canonical_number, extract_answer

ANSWER_KINDS: tuple[str, ...] = typing.get_args(AnswerKind)
DEFAULT_N = 50  # questions per generated or reasoning-gym dataset unless --n says otherwise


class SpecError(ValueError):
    """A dataset spec that cannot be loaded at all (unknown task, bad config, missing file)."""


# ------------------------------------------------------------------------------------ checkers

Checker = Callable[[str, Question], tuple[str, bool]]


def _norm(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .!?;:'\"`")


def check_number(response: str, q: Question) -> tuple[str, bool]:
    """Numeric equality of the asserted number (or asserted choice) with the answer."""
    got = extract_answer(response, q.kind or "number", q.choices) or ""
    return got, bool(got) and answers_equal(got, q.answer)


def check_exact(response: str, q: Question) -> tuple[str, bool]:
    """The final line (or the ``kind``'s extraction) equals the answer, case and spacing aside."""
    got = extract_answer(response, q.kind or "last_line", q.choices) or ""
    return got, bool(got) and _norm(got) == _norm(q.answer)


def check_choice(response: str, q: Question) -> tuple[str, bool]:
    """The option the response asserts (letters A-E unless ``choices`` say otherwise) is the answer."""
    got = extract_answer(response, "choice", q.choices) or ""
    return got, bool(got) and _norm(got) == _norm(q.answer)


def check_math(response: str, q: Question) -> tuple[str, bool]:
    """Boxed/auto extraction, then numeric, text or math-verify equality (``answers_equal``)."""
    got = extract_answer(response, q.kind or "auto", q.choices) or ""
    return got, bool(got) and answers_equal(got, q.answer)


CHECKERS: dict[str, Checker] = {
    "number": check_number,
    "exact": check_exact,
    "choice": check_choice,
    "math": check_math,
}


# ------------------------------------------------------------------------------------ items


@dataclass(frozen=True)
class EvalItem:
    """One question to run, the checker that grades it, and where it came from (for messages)."""

    question: Question
    checker: str
    grade: Callable[[str], tuple[str, bool]]  # response -> (answer, correct); may raise
    where: str  # "data.jsonl:7" or "rg:gcd #3"
    split: str = ""


@dataclass
class Loaded:
    """The items of every spec, and the problems of the lines that were skipped."""

    items: list[EvalItem] = dataclasses.field(default_factory=list)
    bad_lines: list[str] = dataclasses.field(default_factory=list)  # "PATH:LINE: problem"


def _checked(checker: str, question: Question) -> Callable[[str], tuple[str, bool]]:
    fn = CHECKERS[checker]
    return lambda response: fn(response, question)


def load(specs: Sequence[str], n: int | None = None, seed: int = 0) -> Loaded:
    """Every spec's items in order; duplicate ids after the first are bad lines. Raises SpecError."""
    if len(set(specs)) != len(specs):
        raise SpecError(f"a dataset is given twice: {sorted(s for s in set(specs) if specs.count(s) > 1)}")
    loaded = Loaded()
    seen: dict[str, str] = {}
    for spec in specs:
        part = load_spec(spec, n, seed)
        for item in part.items:
            first = seen.setdefault(item.question.id, item.where)
            if first != item.where:
                part.bad_lines.append(f"{item.where}: duplicate id '{item.question.id}' (first at {first})")
                continue
            loaded.items.append(item)
        loaded.bad_lines += part.bad_lines
    return loaded


def load_spec(spec: str, n: int | None = None, seed: int = 0) -> Loaded:
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise SpecError(f"dataset '{spec}': expected gen:FAMILY, rg:NAME[?key=value&...] or jsonl:PATH")
    if kind == "gen":
        return Loaded(generated_items(rest, n or DEFAULT_N, seed))
    if kind == "rg":
        name, _, query = rest.partition("?")
        return Loaded(reasoning_gym_items(name, n or DEFAULT_N, seed, parse_overrides(query)))
    if kind == "jsonl":
        return load_jsonl(Path(rest), n)
    raise SpecError(f"dataset '{spec}': unknown source '{kind}'; expected gen, rg or jsonl")


def generated_items(family: str, n: int, seed: int = 0) -> list[EvalItem]:
    if family not in FAMILIES:
        raise SpecError(f"unknown generated family '{family}'; known: {', '.join(sorted(FAMILIES))}")
    return [EvalItem(q, "number", _checked("number", q), f"gen:{family} #{i}", split_of(q))
            for i, q in enumerate(generated(family, n, seed))]


# ------------------------------------------------------------------------------------ reasoning-gym


def parse_overrides(query: str) -> dict[str, str]:
    """``a=1&b=x,y`` -> {"a": "1", "b": "x,y"}; percent-escapes decode, a ``+`` stays a plus."""
    out: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        key = unquote(key).strip()
        if not eq or not key:
            raise SpecError(f"config override '{pair}' is not key=value")
        if key in out:
            raise SpecError(f"config key '{key}' given twice")
        out[key] = unquote(value)
    return out


def rg_config(name: str, overrides: dict[str, str]) -> dict[str, Any]:
    """The configuration a ``rg:NAME?overrides`` spec stands for, typed like the task's config class."""
    from reasoning_gym.factory import DATASETS

    if name not in DATASETS:
        raise SpecError(f"unknown reasoning-gym task '{name}'; known: {', '.join(sorted(DATASETS))}")
    config_cls = DATASETS[name][1]
    hints = typing.get_type_hints(config_cls)
    fields = [f.name for f in dataclasses.fields(config_cls) if f.name not in ("seed", "size")]
    config: dict[str, Any] = dict(REASONING_GYM.get(name, {}))
    for key, raw in overrides.items():
        if key in ("seed", "size"):
            raise SpecError(f"rg:{name}: '{key}' comes from --{'seed' if key == 'seed' else 'n'}, not the spec")
        if key not in fields:
            raise SpecError(f"rg:{name}: unknown config key '{key}'; known: {', '.join(fields)}")
        try:
            config[key] = convert(raw, hints.get(key, Any))
        except (ValueError, TypeError) as exc:
            raise SpecError(f"rg:{name}: {key}={raw!r}: {exc}") from None
    return config


def convert(raw: str, tp: Any) -> Any:
    """A query-string value as a value of type ``tp`` (int, float, bool, str, Literal, Optional, lists)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(raw, inner[0] if len(inner) == 1 else Any)
    if origin is typing.Literal:
        for option in args:
            if str(option) == raw:
                return option
        raise ValueError(f"expected one of {list(args)}")
    if tp is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if tp in (int, float):
        return tp(raw)
    if tp is str:
        return raw
    if tp in (list, tuple) or origin in (list, tuple, Sequence, typing.Sequence):
        if raw.lstrip().startswith("["):
            values = json.loads(raw)
        else:
            values = [v.strip() for v in raw.split(",")] if raw.strip() else []
        element = args[0] if args and args[0] is not Ellipsis else Any
        converted = [convert(v, element) if isinstance(v, str) else v for v in values]
        return tuple(converted) if (tp is tuple or origin is tuple) else converted
    try:  # anything else: a JSON value, or the text itself
        return json.loads(raw)
    except ValueError:
        return raw


def _config_tag(name: str, config: dict[str, Any]) -> str:
    if config == REASONING_GYM.get(name, {}):
        return ""
    body = json.dumps(config, sort_keys=True, default=str)
    return "~" + hashlib.sha256(body.encode()).hexdigest()[:8]


def reasoning_gym_items(name: str, n: int, seed: int = 0, overrides: dict[str, str] | None = None) -> list[EvalItem]:
    import reasoning_gym as rg

    config = rg_config(name, overrides or {})
    try:
        dataset = rg.create_dataset(name, size=n, seed=seed, **config)
    except (AssertionError, ValueError, TypeError) as exc:
        raise SpecError(f"rg:{name}: configuration {config} refused: {exc}") from None
    tag = _config_tag(name, config)
    items = []
    for i, entry in enumerate(dataset):
        answer = str(entry["answer"])
        q = Question(id=f"rg-{name}{tag}-{seed}-{i}", family=f"rg:{name}", text=entry["question"], answer=answer,
                     kind="number" if canonical_number(answer) is not None else "last_line",
                     source=f"reasoning-gym:{name}", seed=seed)
        items.append(EvalItem(q, "rg", _rg_grader(dataset, entry, q), f"rg:{name} #{i}", split_of(q)))
    return items


def _rg_grader(dataset: Any, entry: dict[str, Any], q: Question) -> Callable[[str], tuple[str, bool]]:
    """The task's own scorer on the response's answer: the ``<answer>`` tag reasoning-gym prompts for, else
    what :func:`extract_answer` finds. Full credit only counts as correct (partial scores do not)."""
    from reasoning_gym.utils import extract_answer as rg_extract

    def grade(response: str) -> tuple[str, bool]:
        got = rg_extract(response) or extract_answer(response, q.kind) or ""
        return got, bool(got) and float(dataset.score_answer(got, entry)) >= 1.0

    return grade


# ------------------------------------------------------------------------------------ JSONL


def load_jsonl(path: Path, n: int | None = None) -> Loaded:
    """The valid lines of ``path`` (at most ``n`` of them); every other non-blank line is a bad line.

    Lines end at a newline (``\\n``, optionally after ``\\r``) and are decoded one by one, so one bad
    byte costs its own line only."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a directory, device or pipe is never read
            raise SpecError(f"jsonl:{path}: not a regular file")
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"jsonl:{path}: cannot read: {exc.strerror or exc}") from None
    data = data.removeprefix(codecs.BOM_UTF8)
    loaded = Loaded()
    ids: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), 1):
        if n is not None and len(loaded.items) >= n:
            break
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            loaded.bad_lines.append(f"{where}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
            continue
        try:
            item = parse_line(line, path, number)
        except ValueError as exc:
            loaded.bad_lines.append(f"{where}: {exc}")
            continue
        if (first := ids.setdefault(item.question.id, number)) != number:
            loaded.bad_lines.append(f"{where}: duplicate id '{item.question.id}' (first on line {first})")
            continue
        loaded.items.append(item)
    return loaded


def _text_field(row: dict[str, Any], key: str, required: bool) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise ValueError(f"missing '{key}'")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"'{key}' must be a string{' or a number' if key == 'answer' else ''}, "
                         f"got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):  # NaN, Infinity, 1e999: no answer to expect
        raise ValueError(f"'{key}' must be a finite number, got {value}")
    text = str(value).strip()
    if required and not text:
        raise ValueError(f"'{key}' is empty")
    return text


def parse_line(line: str, path: Path, number: int) -> EvalItem:
    """One JSONL line as an item; ValueError says what is wrong with it."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    text, answer = _text_field(row, "question", True), _text_field(row, "answer", True)
    qid = _text_field(row, "id", False) or f"jsonl:{path.stem}:{number}"
    family = _text_field(row, "family", False) or f"jsonl:{path.stem}"
    kind = _text_field(row, "kind", False)
    if kind and kind not in ANSWER_KINDS:
        raise ValueError(f"unknown kind '{kind}'; known: {', '.join(ANSWER_KINDS)}")
    choices = row.get("choices") or []
    if not isinstance(choices, list) or not all(
        isinstance(c, str) or (isinstance(c, int | float) and math.isfinite(c))
        for c in choices
    ):
        raise ValueError("'choices' must be a list of strings")
    choices = tuple(str(c) for c in choices)
    numeric = canonical_number(answer) is not None
    checker = _text_field(row, "checker", False) or ("number" if numeric else "exact")
    if checker not in CHECKERS:
        raise ValueError(f"unknown checker '{checker}'; known: {', '.join(CHECKERS)}")
    if checker == "number" and not numeric and answer not in choices:
        raise ValueError(f"checker 'number' needs a numeric answer (or one of the choices), got {answer!r}")
    if checker == "choice":
        options = [_norm(c) for c in choices] or [c.casefold() for c in "ABCDE"]
        if _norm(answer) not in options:
            raise ValueError(f"checker 'choice' needs the answer among the choices {list(choices) or 'A-E'}, "
                             f"got {answer!r}")
    q = Question(id=qid, family=family, text=text, answer=answer, kind=kind, choices=choices,
                 source=f"jsonl:{path}", seed=0)
    return EvalItem(q, checker, _checked(checker, q), f"{path}:{number}")
