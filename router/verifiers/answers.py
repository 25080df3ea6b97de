"""Final-answer extraction and answer equality, for voting and verifier ranking.

Self-consistency and best-of-n count votes per *answer*, so a parser that is too lenient turns
wrong samples into right votes. The motivating failure: a lenient parser scored "19 is larger than
71" as correct for "which is larger, 19 or 71?" (truth 71) because 71 was the last number. The
rules below therefore prefer what the text *asserts* over what it merely *mentions*, and abstain
(return ``None``) whenever they would have to guess. An abstention casts no vote.

Kinds (``extract_answer(text, kind, choices)``):

``boxed``
    The content of the LAST ``\\boxed{...}`` (balanced braces, nesting allowed). A truncated last
    box abstains rather than falling back to an earlier box. The content is canonicalised as a
    number when it is one (``\\frac{1}{2}`` -> ``1/2``, ``\\$1,234`` -> ``1234``, ``5 \\text{ cm}``
    -> ``5``), as a letter when the letter ``choices`` are given, else returned stripped.

``number``
    Without ``choices``: explicit final-answer markers beat earlier numbers, in this order:
    ``#### X`` (GSM8K), ``\\boxed{X}``, "answer is X" / "Answer: X" (last marker followed by a
    number), a bold bare number ``**X**``, ``= X`` ending the last line; otherwise the last number
    in the text. A marker is only honoured when the number comes right after it (``"the answer is
    not 5"`` is no marker). A non-numeric ``\\boxed{}`` abstains: the declared answer is not a
    number, so any other number would be a guess. Numbers are integers, decimals, negatives,
    thousands separators (``1,234`` but not ``1,2``), ``3/4`` and ``\\frac{3}{4}``, and English
    number words up to the thousands (``twenty-one``, ``one hundred and five``). Word phrases that
    do not parse completely (``twenty twenty``), that continue into something unsupported
    (``one million``, ``two and a half``, ``three quarters``, ``zero point five``), ordinals
    (``3rd``, ``twenty-first``), dates (``1/2/2020``), versions (``1.2.3``), exponents (``1e5``)
    and the pronoun "one" (``the larger one``, ``one of``) are not numbers.

    With ``choices`` (e.g. ``["19", "71"]``) the answer is the choice the text *asserts*:
    level 1, explicit markers ("answer is X", ``#### X``, ``\\boxed{X}``; the last one wins, a
    self-correction being the model's final word); level 2, comparative assertions (``X is
    larger/greater/smaller/less/more... [than Y]``, ``X is correct``, ``the larger [number] is X``);
    level 3, the text ending on ``is X.`` or on a sentence that is just ``X.``, or a bold ``**X**``.
    The first level with an assertion decides; at levels 2 and 3 the assertions must all name the
    same choice, otherwise the answer is ambiguous and abstains. Negated or questioned statements
    (``X is not larger``, ``is X larger?``) assert nothing; a text that only mentions the choices
    abstains. So ``"19 is larger than 71"`` -> ``"19"`` (what it asserts; the grader marks it
    wrong), never ``"71"``. Without the question, the comparative's subject is taken as the answer
    whatever the adjective, so for "which is larger?" a sample saying "19 is smaller than 71"
    yields ``"19"``: pass choices and phrase comparisons in the question's own terms.
    Choices that are not numbers are matched as whole words, case-insensitively.

``choice``
    Letter options: ``"(B)"``, ``"B)"``, ``"Answer: B"``, ``"the answer is (c)"``, ``"option C"``,
    ``\\boxed{B}``, or a last line that is just the letter -> ``"B"``. Only the letters in ``choices``
    count (default A-E). Explicit markers (answer markers, box, bare last line) win, the last one
    first; weaker mentions (parenthesised letters, ``B)``, "option B") must agree or the answer
    abstains (the model often echoes all options). A lowercase letter counts only in parentheses or
    followed by punctuation/end, so the article in "a cat" is never option A; an uppercase letter
    only counts next to a marker, so "A cat sat" is not either. Given non-letter ``choices``, the
    assertion rules of ``number`` apply.

``last_line``
    The last non-empty line without markdown emphasis, a leading "Answer:"/"Final answer:",
    surrounding quotes and a trailing period. ``None`` if nothing is left.

``text``
    The whole text lowercased, whitespace collapsed, trailing punctuation stripped.

``auto``
    ``boxed`` if the text has a ``\\boxed{``; else ``choice`` if the ``choices`` are all single
    letters; else, with other ``choices``, the assertion rules (always a choice or ``None``); else
    ``number`` if the text has any number; else ``last_line``.

``answers_equal(a, b)`` compares canonical answers: numerically with exact rationals when both
are numbers (``0.5 == 1/2``, ``2 == 2.0``); else equal after text normalisation; else, when both
look like math (no English words), with math-verify (``\\frac{\\sqrt{2}}{2} == \\sqrt{2}/2``). An
empty answer (an abstention) equals nothing. math-verify is imported lazily, results are cached,
and any exception it raises counts as "not equal". Its timeout is a SIGALRM, which only works in
the main thread: there it runs with a timeout (an alarm already set, e.g. pytest-timeout's, is put
back afterwards); in worker threads (RPC handlers) it runs without one, so inputs sympy may spend
unbounded time on (exponents, factorials, 16+ digit integers) are then not sent to it.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from typing import Literal, get_args

from router.errors import InvalidArgumentError

__all__ = ["AnswerKind", "answers_equal", "canonical_number", "extract_answer"]

AnswerKind = Literal["auto", "number", "choice", "boxed", "last_line", "text"]
_KINDS = frozenset(get_args(AnswerKind))
_DEFAULT_LETTERS = "ABCDE"

# --------------------------------------------------------------------------- number words

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000}
_NUMBER_WORDS = {**_UNITS, **_TENS, **_SCALES}

_NW = r"(?:" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
# A run of number words joined by spaces or hyphens; "and" only right after hundred/thousand.
_WORD_RUN_RE = re.compile(
    rf"\b{_NW}\b(?:(?:-|\s+)\b{_NW}\b|(?:(?<=hundred)|(?<=thousand))\s+and\s+\b{_NW}\b)*",
    re.IGNORECASE,
)
_COMPARATIVES = (
    r"(?:larger|greater|bigger|higher|more|smaller|less|lesser|lower|fewer|largest|greatest|biggest|highest"
    r"|most|smallest|least|lowest|fewest|longer|shorter|longest|shortest|heavier|lighter|heaviest|lightest"
    r"|older|younger|oldest|youngest|faster|slower|fastest|slowest)"
)
# What may not follow a word number: it would continue into a value we do not parse ("two and a
# half", "three quarters", "one million", "zero point five") or make it an ordinal ("twenty-first").
_FRACTION_WORDS = (
    r"(?:halves|half|quarters?|thirds?|fourths?|fifths?|sixths?|sevenths?|eighths?|ninths?|tenths?"
    r"|hundredths?|thousandths?|millions?|billions?|trillions?|dozens?|hundreds|thousands|point)\b"
)
_WORD_UNSUPPORTED_AFTER_RE = re.compile(
    rf"^(?:\s+(?:and\s+)?(?:a\s+)?{_FRACTION_WORDS}|-(?:{_FRACTION_WORDS}|first\b|second\b|third\b|[a-z]*th\b))",
    re.IGNORECASE,
)
_WORD_UNSUPPORTED_BEFORE_RE = re.compile(r"\bpoint\s*$", re.IGNORECASE)
# "one" as a pronoun: "the one", "which one", "the larger one", "one of", "one another".
_PRONOUN_ONE_BEFORE_RE = re.compile(
    r"\b(?:the|this|that|which|each|every|no|any|some|another|other|last|first|next|same|right|wrong"
    rf"|correct|{_COMPARATIVES})\s+$",
    re.IGNORECASE,
)
_PRONOUN_ONE_AFTER_RE = re.compile(r"^\s+(?:of|another|by|who|which|that|'s)\b|^'s\b", re.IGNORECASE)


def _parse_number_words(run: str) -> int | None:
    """Value of a run of number words, or None unless the whole run is one well-formed number.

    Grammar: ``zero`` | thousands; thousands = hundreds [``thousand`` [``and``] hundreds]; hundreds =
    below100 [``hundred`` [``and``] below100] (multiplier 1..99); below100 = unit | teen | tens
    [-unit]. Hyphens only between tens and a unit.
    """
    tokens: list[tuple[str, str]] = []  # (separator before, word)
    for m in re.finditer(r"(-|\s+and\s+|\s+)?([a-z]+)", run.lower()):
        sep = (m.group(1) or "").strip() or " "
        tokens.append((sep, m.group(2)))
    if not tokens:
        return None
    if tokens[0][1] == "zero":
        return 0 if len(tokens) == 1 else None
    pos = 0

    def below_hundred() -> int | None:
        nonlocal pos
        if pos >= len(tokens):
            return None
        word = tokens[pos][1]
        if word in _UNITS and word != "zero":
            pos += 1
            return _UNITS[word]
        if word in _TENS:
            value = _TENS[word]
            pos += 1
            if pos < len(tokens) and tokens[pos][0] in (" ", "-") and 1 <= _UNITS.get(tokens[pos][1], 0) <= 9:
                value += _UNITS[tokens[pos][1]]
                pos += 1
            return value
        return None

    def hundreds() -> int | None:
        nonlocal pos
        value = below_hundred()
        if value is None:
            return None
        if pos < len(tokens) and tokens[pos] == (" ", "hundred"):
            pos += 1
            value *= 100
            if pos < len(tokens) and tokens[pos][0] in (" ", "and") and tokens[pos][1] not in _SCALES:
                rest = below_hundred()
                if rest is None:
                    return None
                value += rest
        return value

    value = hundreds()
    if value is None:
        return None
    if pos < len(tokens) and tokens[pos] == (" ", "thousand"):
        pos += 1
        value *= 1000
        if pos < len(tokens) and tokens[pos][0] in (" ", "and"):
            rest = hundreds()
            if rest is None or rest >= 1000:
                return None
            value += rest
    if pos != len(tokens) or not _hyphens_ok(tokens):
        return None
    return value


def _hyphens_ok(tokens: list[tuple[str, str]]) -> bool:
    """Hyphens only join a tens word to a unit 1..9 ("twenty-one")."""
    for i, (sep, word) in enumerate(tokens):
        if sep == "-" and not (i > 0 and tokens[i - 1][1] in _TENS and 1 <= _UNITS.get(word, 0) <= 9):
            return False
    return True


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class _Mention:
    """A number found in a text: its span, exact value and canonical spelling."""

    start: int
    end: int
    value: Fraction
    canon: str


_LATEX_FRAC_RE = re.compile(r"(?<![\w.])(-\s*)?\\[dt]?frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_DIGITS_RE = re.compile(
    r"(?<![\w./])(?P<sign>[-\u2212](?=\$?\d|\$?\.\d))?(?:\\?\$)?"
    r"(?P<body>\d+/\d+|(?:\d{1,3}(?:,\d{3})+(?!\d)(?!,\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?!\d)(?![./]\d)(?![eE][-+]?\d)(?!(?:st|nd|rd|th)\b)(?!\s+and\s+a\s+half\b)"
)
_PLAIN_NUMBER_RE = re.compile(r"[-+\u2212]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)", re.ASCII)
_PLAIN_FRACTION_RE = re.compile(r"([-+\u2212]?)(\d+)\s*/\s*(\d+)", re.ASCII)
_PLAIN_LATEX_FRAC_RE = re.compile(r"([-+\u2212]?)\s*\\[dt]?frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_PLAIN_LATEX_FRAC_SHORT_RE = re.compile(r"([-+\u2212]?)\s*\\[dt]?frac(\d)(\d)")


def _format(value: Fraction, as_fraction: bool) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    if as_fraction:
        return f"{value.numerator}/{value.denominator}"
    text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _number_value(value: str) -> tuple[Fraction, bool] | None:
    """(exact value, spelled as a fraction) of a string that is exactly one number, else None."""
    s = value.strip()
    if not s:
        return None
    s = re.sub(r"^\\\(|\\\)$", "", s).strip()  # \( ... \)
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s[1:-1].strip()  # $...$ math delimiters
    s = s.replace("{,}", ",").replace("\\!", "").replace("\\,", "")
    sign = ""
    if s[:1] in "-+\u2212" and s[1:2] in ("$", "\\"):
        sign, s = s[0], s[1:]
    s = re.sub(r"^(?:\\\$|\$)\s*", "", s)  # currency
    s = sign + s
    s = s.replace("\u2212", "-")
    if _PLAIN_NUMBER_RE.fullmatch(s):
        try:
            return Fraction(Decimal(s.replace(",", ""))), False
        except (InvalidOperation, ValueError):
            return None
    for pattern in (_PLAIN_FRACTION_RE, _PLAIN_LATEX_FRAC_RE, _PLAIN_LATEX_FRAC_SHORT_RE):
        m = pattern.fullmatch(s)
        if m:
            num, den = int(m.group(2)), int(m.group(3))
            if den == 0:
                return None
            frac = Fraction(num, den)
            return (-frac if m.group(1) == "-" else frac), True
    words = s.lower().strip()
    negative = words.startswith(("-", "negative "))
    if negative:
        words = re.sub(r"^(?:-|negative\s+)\s*", "", words)
    if re.fullmatch(r"[a-z]+(?:(?:\s*-\s*|\s+)[a-z]+)*", words) and all(
        w in _NUMBER_WORDS or w == "and" for w in re.split(r"[\s-]+", words)
    ):
        number = _parse_number_words(words)
        if number is not None:
            return Fraction(-number if negative else number), False
    return None


def canonical_number(value: str) -> str | None:
    """Canonical spelling of a string that is exactly one number, else None.

    ``"1,234"`` -> ``"1234"``, ``"3.50"`` -> ``"3.5"``, ``"68.0"`` -> ``"68"``, ``"-0"`` -> ``"0"``,
    ``"007"`` -> ``"7"``, ``"2/4"`` -> ``"1/2"`` (fractions stay fractions, reduced), ``"\\frac{3}{4}"``
    -> ``"3/4"``, ``"$1,234.00"`` -> ``"1234"``, ``"twenty-one"`` -> ``"21"``. ``"1,2"``, ``"50%"``,
    ``"1e5"`` and anything with other text are not numbers.
    """
    parsed = _number_value(value)
    if parsed is None:
        return None
    return _format(*parsed)


_NEGATIVE_WORD_RE = re.compile(r"(?<![\w-])negative\s+$", re.IGNORECASE)


def _find_numbers(text: str) -> list[_Mention]:
    """Every number mentioned in ``text``, in order: LaTeX fractions, digits, number words."""
    found: list[_Mention] = []
    taken: list[tuple[int, int]] = []
    for m in _LATEX_FRAC_RE.finditer(text):
        num, den = int(m.group(2)), int(m.group(3))
        if den == 0:
            continue
        value = Fraction(num, den) * (-1 if m.group(1) else 1)
        found.append(_Mention(m.start(), m.end(), value, _format(value, True)))
        taken.append((m.start(), m.end()))
    for m in _DIGITS_RE.finditer(text):
        if any(a <= m.start() < b for a, b in taken):
            continue
        body = m.group("body")
        try:
            if "/" in body:
                num, den = (int(x) for x in body.split("/"))
                if den == 0:
                    continue
                value, as_fraction = Fraction(num, den), True
            else:
                value, as_fraction = Fraction(Decimal(body.replace(",", ""))), False
        except (InvalidOperation, ValueError):
            continue
        if m.group("sign"):
            value = -value
        found.append(_Mention(m.start(), m.end(), value, _format(value, as_fraction)))
    for m in _WORD_RUN_RE.finditer(text):
        if _WORD_UNSUPPORTED_AFTER_RE.match(text[m.end() :]) or _WORD_UNSUPPORTED_BEFORE_RE.search(text[: m.start()]):
            continue
        if m.group(0).lower() == "one" and (
            _PRONOUN_ONE_BEFORE_RE.search(text[max(0, m.start() - 30) : m.start()])
            or _PRONOUN_ONE_AFTER_RE.match(text[m.end() :])
        ):
            continue
        number = _parse_number_words(m.group(0))
        if number is None:
            continue
        start = m.start()
        negative = _NEGATIVE_WORD_RE.search(text, max(0, start - 12), start)
        if negative:
            number, start = -number, negative.start()
        found.append(_Mention(start, m.end(), Fraction(number), str(number)))
    found.sort(key=lambda mention: mention.start)
    return found


# --------------------------------------------------------------------------- markers and helpers

# What may stand between a marker and the answer it introduces.
_FILLER_RE = re.compile(
    r"(?:\s+|[:=*$(\[{]|\\\(|\\\[|\\boxed\s*\{|\\text(?:bf)?\s*\{|\\mathbf\s*\{|\bapproximately\b|\bapprox\.?"
    r"|\babout\b|\baround\b|\broughly\b|\bexactly\b|\bequal to\b|\bequals\b|\bjust\b|\bsimply\b)*",
    re.IGNORECASE,
)
_ANSWER_MARKER_RE = re.compile(
    r"\banswer\b\s*(?:\*\*)?\s*(?::|=|\bis\b|\bwould be\b|\bwill be\b|\bshould be\b|\bmust be\b)",
    re.IGNORECASE,
)
_GSM8K_MARKER_RE = re.compile(r"####")
_BOLD_RE = re.compile(r"\*\*([^*\n]{1,60}?)\*\*")
_EXPRESSION_CONTINUES_RE = re.compile(r"^\s*(?:[-+*/\u00d7\u00f7^]|\\times|\\cdot|\\div)\s*[\d(\\]")
_SENTENCE_END_RE = re.compile(r"[!?;\n]|\.(?!\d)")


def _mention_after(text: str, pos: int, mentions: Sequence[_Mention]) -> _Mention | None:
    """The number that comes right after ``pos`` (only fillers between), else None."""
    for m in mentions:
        if m.start < pos:
            continue
        if _FILLER_RE.fullmatch(text, pos, m.start):
            return m
        return None
    return None


def _result_of_expression(text: str, m: _Mention, mentions: Sequence[_Mention]) -> _Mention | None:
    """``m`` itself, or for "answer is 3 + 4 = 7" the number after the last '=' of that sentence."""
    if not _EXPRESSION_CONTINUES_RE.match(text[m.end :]):
        return m
    end_match = _SENTENCE_END_RE.search(text, m.end)
    end = end_match.start() if end_match else len(text)
    eq = text.rfind("=", m.end, end)
    if eq < 0:
        return None
    result = _mention_after(text, eq + 1, mentions)
    if result is None or result.end > end or _EXPRESSION_CONTINUES_RE.match(text[result.end :]):
        return None
    return result


def _last_boxed_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the content of the last ``\\boxed{...}``; None if there is none or it never closes."""
    starts = [m.end() for m in re.finditer(r"\\boxed\s*\{", text)]
    if not starts:
        return None
    open_at = starts[-1]  # just past the opening brace
    depth = 1
    i = open_at
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return open_at, i
        i += 1
    return None  # truncated: the last box is not closed


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (None if there is none or its braces never close)."""
    span = _last_boxed_span(text)
    return text[span[0] : span[1]] if span else None


def _has_boxed(text: str) -> bool:
    return re.search(r"\\boxed\s*\{", text) is not None


def _balanced(s: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", s):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _strip_units(content: str) -> str:
    """Boxed content without wrappers and unit decorations: ``\\text{5 cm}`` stays, ``5 \\text{ cm}`` -> ``5``."""
    s = content.strip()
    while True:
        m = re.fullmatch(r"\\(?:boxed|text|textbf|mathbf|mathrm)\s*\{(.*)\}", s, re.DOTALL)
        if not m or not _balanced(m.group(1)):
            break
        s = m.group(1).strip()
    if re.search(r"\d", s):
        s = re.sub(r"\\(?:text|mathrm|mbox)\s*\{[^{}]*\}\s*$", "", s).strip()  # trailing unit
        s = re.sub(r"\^\s*\{?\\circ\}?$", "", s).strip()  # degrees
    return s


def _boxed_number(content: str) -> str | None:
    """Canonical number of a boxed answer (``5 \\text{ cm}`` and ``x = 5`` -> ``5``), else None."""
    s = _strip_units(content)
    number = canonical_number(s)
    if number is None and "=" in s:
        number = canonical_number(_strip_units(s.rsplit("=", 1)[1]))
    return number


_LETTER_CONTENT_RE = re.compile(r"\(?\s*([A-Za-z])\s*\)?\s*\.?")


def _canonical_boxed(content: str, letters: str | None) -> str | None:
    """A boxed answer: a choice letter (when ``letters``), else a canonical number, else the stripped content."""
    if letters:
        m = _LETTER_CONTENT_RE.fullmatch(_strip_units(content).replace("*", "").strip())
        if m and m.group(1).upper() in letters:
            return m.group(1).upper()
    number = _boxed_number(content)
    if number is not None:
        return number
    return content.strip() or None


def _normalise_text(text: str) -> str:
    """Lowercased, whitespace collapsed, surrounding ``$`` and trailing punctuation stripped."""
    s = text.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s[1:-1]
    s = re.sub(r"\s+", " ", s.lower()).strip()
    return s.rstrip(".!?,;: ").strip()


def _letters_of(choices: Sequence[str]) -> str | None:
    """The choices as uppercase letters if they are all single letters, else None."""
    cleaned = [c.strip() for c in choices]
    if cleaned and all(len(c) == 1 and c.isascii() and c.isalpha() for c in cleaned):
        return "".join(dict.fromkeys(c.upper() for c in cleaned))
    return None


def _last_nonempty_line_span(text: str) -> tuple[int, int] | None:
    end = len(text)
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        if text[start:end].strip():
            return start, end
        end = start - 1
    return None


def _last_nonempty_line(text: str) -> str | None:
    span = _last_nonempty_line_span(text)
    return text[span[0] : span[1]] if span else None


# --------------------------------------------------------------------------- kinds


def _extract_number(text: str) -> str | None:
    """The ``number`` rules without choices (see the module docstring)."""
    if _has_boxed(text):
        # The declared answer: a number or nothing (a truncated or non-numeric box abstains).
        content = _last_boxed(text)
        return _boxed_number(content) if content is not None else None
    mentions = _find_numbers(text)
    if not mentions:
        return None
    for marker_re in (_GSM8K_MARKER_RE, _ANSWER_MARKER_RE):
        for marker in reversed(list(marker_re.finditer(text))):
            m = _mention_after(text, marker.end(), mentions)
            result = _result_of_expression(text, m, mentions) if m is not None else None
            if result is not None:
                return result.canon
    for bold in reversed(list(_BOLD_RE.finditer(text))):
        number = canonical_number(bold.group(1).strip().rstrip(".").strip())
        if number is not None:
            return number
    line = _last_nonempty_line_span(text)
    if line is not None:
        eq = text.rfind("=", *line)
        m = _mention_after(text, eq + 1, mentions) if eq >= 0 else None
        if m is not None and not any(m.start < other.start < line[1] for other in mentions):
            return m.canon
    return mentions[-1].canon


# Choice assertions (``number``/auto with choices, ``choice`` with non-letter choices).
_SUBJECT_RE = re.compile(
    r"^\s*(?:\*\*)?\s*,?\s*(?:is|was|'s|would be|will be|must be|should be|seems|appears)\s+"
    r"(?:(?:clearly|definitely|obviously|much|slightly|far|indeed|actually|certainly|the|a|bit|little|lot)\s+)*"
    rf"(?:{_COMPARATIVES}|correct|right)\b",
    re.IGNORECASE,
)
_PREDICATE_RE = re.compile(
    rf"\b(?:{_COMPARATIVES}|correct|right)\b[^.!?\n]{{0,40}}?\b(?:is|would be|will be|must be|should be)"
    r"\s*:?\s*(?:\*\*|\$)?\s*$",
    re.IGNORECASE,
)
_END_BEFORE_RE = re.compile(r"(?:^|[.!?:\n]|\bis)\s*(?:\*\*)?\s*$", re.IGNORECASE)
_END_AFTER_RE = re.compile(r"^\s*(?:\*\*)?\s*[.!]?\s*(?:\*\*)?\s*$")


def _sentence_is_question(text: str, pos: int) -> bool:
    """Whether the sentence running on from ``pos`` ends with a question mark."""
    end = _SENTENCE_END_RE.search(text, pos)
    return end is not None and text[end.start()] == "?"


def _choice_mentions(text: str, choices: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, canonical choice) for every mention of a choice, in order.

    Numeric choices match numbers of the same value (digits or words); others match as whole
    words, case-insensitively.
    """
    canon: list[tuple[str, Fraction | None]] = []
    for choice in choices:
        parsed = _number_value(choice)
        if parsed is not None:
            canon.append((_format(*parsed), parsed[0]))
        elif choice.strip():
            canon.append((choice.strip(), None))
    out: list[tuple[int, int, str]] = []
    if any(value is not None for _, value in canon):
        for m in _find_numbers(text):
            name = next((name for name, value in canon if value is not None and value == m.value), None)
            if name is not None:
                out.append((m.start, m.end, name))
    for name, value in canon:
        if value is None:
            for m in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE):
                out.append((m.start(), m.end(), name))
    out.sort()
    return out


def _extract_asserted_choice(text: str, choices: Sequence[str]) -> str | None:
    """The choice the text asserts as its answer, or None when it asserts none or several."""
    mentions = _choice_mentions(text, choices)
    if not mentions:
        return None
    # Level 1: explicit markers, the last one wins.
    explicit: list[tuple[int, str]] = []
    for marker_re in (_GSM8K_MARKER_RE, _ANSWER_MARKER_RE):
        for marker in marker_re.finditer(text):
            start, _end, name = next(((s, e, n) for s, e, n in mentions if s >= marker.end()), (-1, -1, ""))
            if start >= 0 and _FILLER_RE.fullmatch(text, marker.end(), start):
                explicit.append((start, name))
    box = _last_boxed_span(text)
    if box is not None:
        inside = {name for start, end, name in mentions if box[0] <= start and end <= box[1]}
        if len(inside) == 1:
            explicit.append((box[0], inside.pop()))
    if explicit:
        return max(explicit)[1]
    # Level 2: comparative assertions. Level 3: the text ends on the choice, or a bold choice.
    comparative: set[str] = set()
    ending: set[str] = set()
    last_start = mentions[-1][0]
    for start, end, name in mentions:
        if _sentence_is_question(text, end):
            continue
        before = text[max(0, start - 80) : start]
        if _SUBJECT_RE.match(text[end:]) or _PREDICATE_RE.search(before):
            comparative.add(name)
        if re.search(r"\*\*\s*$", before) and re.match(r"\s*\.?\s*\*\*", text[end:]):
            ending.add(name)
        if start == last_start and _END_AFTER_RE.match(text[end:]) and _END_BEFORE_RE.search(before):
            ending.add(name)
    for asserted in (comparative, ending):
        if asserted:
            return asserted.pop() if len(asserted) == 1 else None
    return None


def _letter_pattern(letters: str) -> str:
    """One letter option, case-sensitive: "(b)", "[b]", "B" as a word, or "b" before punctuation/end."""
    both = letters + letters.lower()
    return (
        rf"(?:\(\s*([{both}])\s*\)|\[\s*([{both}])\s*\]"
        rf"|([{letters}])(?![\w'])"
        rf"|([{letters.lower()}])(?=\s*(?:[).:,;!?*}}\]]|$)))"
    )


def _letter_of(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g).upper()


_MARKER_PREFIX = (
    r"(?i:\banswer\b)\s*(?:\*\*)?\s*(?::|=|\b(?i:is|would be|will be|should be|must be)\b)"
    r"(?:\s+|[:*$]|\\text(?:bf)?\{)*"
)


def _extract_choice(text: str, letters: str) -> str | None:
    """The ``choice`` rules (see the module docstring)."""
    if _has_boxed(text):
        content = _last_boxed(text)
        answer = _canonical_boxed(content, letters) if content is not None else None
        return answer if answer is not None and len(answer) == 1 and answer in letters else None
    letter = _letter_pattern(letters)
    both = letters + letters.lower()
    option = rf"(?i:\b(?:option|choice)\b)\s+\(?([{both}])\)?(?![\w'])"
    explicit: list[tuple[int, str]] = []
    for m in re.finditer(_MARKER_PREFIX + rf"(?:{option}|{letter})", text):
        explicit.append((m.start(), _letter_of(m)))
    last_line = _last_nonempty_line(text)
    if last_line is not None:
        bare = re.fullmatch(rf"[*_\s]*{letter}[*_\s.]*", last_line)
        if bare:
            explicit.append((len(text), _letter_of(bare)))
    if explicit:
        return max(explicit)[1]
    weak: set[str] = set()
    for pattern in (
        rf"\(\s*([{both}])\s*\)",
        rf"(?:^|(?<=\s))([{letters}])\)",
        rf"(?m)^\s*([{letters.lower()}])\)",
        option,
    ):
        weak.update(_letter_of(m) for m in re.finditer(pattern, text))
    return weak.pop() if len(weak) == 1 else None


_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}


def _extract_last_line(text: str) -> str | None:
    """The ``last_line`` rules (see the module docstring)."""
    line = _last_nonempty_line(text)
    if line is None:
        return None
    s = re.sub(r"\*\*|__", "", line).strip()
    # A marker is "answer is" or "answer:" ("The answer to this question lies in ..." is none).
    s = re.sub(r"^(?:#+\s*)?(?:the\s+)?(?:final\s+)?answer\s*(?:is\b\s*:?|:)\s*", "", s, flags=re.IGNORECASE).strip()
    s = s.rstrip(".").strip()
    while len(s) >= 2 and _QUOTES.get(s[0]) == s[-1]:
        s = s[1:-1].strip().rstrip(".").strip()
    return s or None


def extract_answer(text: str, kind: AnswerKind = "auto", choices: Sequence[str] = ()) -> str | None:
    """Canonical final answer string, or None (abstention).

    See the module docstring for the rules of each ``kind``. ``choices`` restricts the answer to
    the given options: letters for ``choice``, values (e.g. ``["19", "71"]``) for ``number``.
    Raises :class:`~router.errors.InvalidArgumentError` for an unknown ``kind``.
    """
    if kind not in _KINDS:
        raise InvalidArgumentError("answer_kind", f"unknown answer kind '{kind}'; known: {sorted(_KINDS)}")
    if isinstance(choices, str):
        raise InvalidArgumentError("choices", "expected a sequence of strings such as ['A', 'B'], not one string")
    if not text or not text.strip():
        return None
    letters = _letters_of(choices)
    if kind == "auto":
        if _has_boxed(text):
            content = _last_boxed(text)
            return _canonical_boxed(content, letters) if content is not None else None
        if letters:
            return _extract_choice(text, letters)
        if choices:
            return _extract_asserted_choice(text, choices)
        if _find_numbers(text):
            return _extract_number(text)
        return _extract_last_line(text)
    if kind == "boxed":
        content = _last_boxed(text)
        return _canonical_boxed(content, letters) if content is not None else None
    if kind == "number":
        if letters:
            return _extract_choice(text, letters)
        if choices:
            return _extract_asserted_choice(text, choices)
        return _extract_number(text)
    if kind == "choice":
        if choices and not letters:
            return _extract_asserted_choice(text, choices)
        return _extract_choice(text, letters or _DEFAULT_LETTERS)
    if kind == "last_line":
        return _extract_last_line(text)
    normalised = _normalise_text(text)
    return normalised or None


# --------------------------------------------------------------------------- equality

_LATEX_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_MATH_WORDS_RE = re.compile(r"\b(?:sin|cos|tan|cot|sec|csc|log|ln|exp|sqrt|pi|inf|infty|arcsin|arccos|arctan)\b")
_MATH_VERIFY_TIMEOUT_S = 3
_MAX_MATH_LEN = 200


def _looks_mathematical(s: str) -> bool:
    """No English words left once LaTeX commands and function names are removed.

    math-verify reads "paris" as p*a*r*i*s (so "paris" == "parsi") and drops trailing words
    ("3 apples" == "3"): it is only trusted on math.
    """
    if len(s) > _MAX_MATH_LEN:
        return False
    rest = _MATH_WORDS_RE.sub(" ", _LATEX_COMMAND_RE.sub(" ", s))
    return re.search(r"[A-Za-z]{2,}", rest) is None


def _risky_without_timeout(s: str) -> bool:
    """Inputs sympy may take unbounded time on (towers, factorials, huge numbers)."""
    return bool(re.search(r"\^|!|\\binom|\\choose|\d{16,}", s))


@lru_cache(maxsize=4096)
def _math_verify_equal(a: str, b: str) -> bool:
    try:
        from math_verify import parse, verify
    except Exception:
        return False
    in_main = threading.current_thread() is threading.main_thread()
    if not in_main and (_risky_without_timeout(a) or _risky_without_timeout(b)):
        return False
    timeout = _MATH_VERIFY_TIMEOUT_S if in_main else None
    # math-verify's timeout uses SIGALRM and cancels any alarm already set (e.g. pytest-timeout's):
    # take the outer alarm off and set it again, minus the time spent, afterwards.
    outer = signal.alarm(0) if in_main else 0
    started = time.monotonic()
    try:
        gold = parse(f"${a}$", parsing_timeout=timeout)
        target = parse(f"${b}$", parsing_timeout=timeout)
        if not gold or not target:
            return False
        return bool(verify(gold, target, timeout_seconds=timeout))
    except BaseException as exc:  # math-verify/sympy raise anything, including their TimeoutException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return False
    finally:
        if outer:
            signal.alarm(max(1, round(outer - (time.monotonic() - started))))


def answers_equal(a: str, b: str) -> bool:
    """Whether two canonical answers are the same value (numbers numerically, math via math-verify where it
    applies, else exact).

    Numbers (integers, decimals, fractions, ``\\frac{p}{q}``, number words) compare as exact
    rationals: ``"0.5" == "1/2"``, ``"2" == "2.0"``. Other answers are equal when their normalised
    text is (case, surrounding ``$``, whitespace and trailing punctuation aside), or when both look
    like math and math-verify says so. An empty answer (abstention) equals nothing. Never raises.
    """
    try:
        if not isinstance(a, str) or not isinstance(b, str):
            return False
        na, nb = _normalise_text(a), _normalise_text(b)
        if not na or not nb:
            return False
        va, vb = _number_value(a), _number_value(b)
        if va is not None and vb is not None:
            return va[0] == vb[0]
        if na == nb:
            return True
        if _looks_mathematical(a) and _looks_mathematical(b):
            return _math_verify_equal(a.strip(), b.strip())
        return False
    except Exception:
        return False
