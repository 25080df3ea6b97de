"""Final-answer extraction and equality: every rule, its abstentions, and the lenient-parser regressions."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading

import pytest

from router.errors import InvalidArgumentError
from router.verifiers.answers import answers_equal, canonical_number, extract_answer

# --------------------------------------------------------------------------- canonical_number


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42", "42"),
        ("007", "7"),
        ("-5", "-5"),
        ("\u22125", "-5"),
        ("+5", "5"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("68.0", "68"),
        ("3.50", "3.5"),
        ("0.10", "0.1"),
        (".5", "0.5"),
        ("1,234", "1234"),
        ("1,234,567.80", "1234567.8"),
        ("$1,234.00", "1234"),
        ("\\$18", "18"),
        ("-$5", "-5"),
        ("1{,}234", "1234"),
        ("1/2", "1/2"),
        ("2/4", "1/2"),
        ("-2/4", "-1/2"),
        ("4/2", "2"),
        ("0/5", "0"),
        ("\\frac{3}{4}", "3/4"),
        ("\\dfrac{6}{8}", "3/4"),
        ("-\\frac{1}{2}", "-1/2"),
        ("$\\frac{1}{2}$", "1/2"),
        ("twenty-one", "21"),
        ("negative five", "-5"),
        ("  12  ", "12"),
    ],
)
def test_canonical_number(value: str, expected: str) -> None:
    assert canonical_number(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "1,2",
        "1,2345",
        "12,34",
        "50%",
        "1e5",
        "1/0",
        "1.2.3",
        "abc",
        "5 apples",
        "x = 5",
        "one million",
        "nineteen ninety",
        "a",
        "\\sqrt{2}",
    ],
)
def test_canonical_number_rejects(value: str) -> None:
    assert canonical_number(value) is None


# --------------------------------------------------------------------------- number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", "42"),
        ("She has 7 apples.", "7"),
        ("The temperature is -12 degrees.", "-12"),
        ("The result is \u22124.", "-4"),
        ("It weighs 2.75 kg.", "2.75"),
        ("It costs $3.50.", "3.5"),
        ("The total is 68.0", "68"),
        ("About 1,234 people came.", "1234"),
        ("The population is 1,234,567.", "1234567"),
        ("Values: 1,2", "2"),
        ("She ate 3/4 of the pie.", "3/4"),
        ("Half is 2/4.", "1/2"),
        ("The probability is $\\frac{1}{2}$.", "1/2"),
        ("She is 25% done.", "25"),
        ("It is 10km away.", "10"),
        ("He has twelve apples.", "12"),
        ("There are twenty-one students.", "21"),
        ("There are twenty one students.", "21"),
        ("He counted one hundred and five sheep.", "105"),
        ("It took one hundred five days.", "105"),
        ("The answer is one thousand two hundred and thirty-four.", "1234"),
        ("Twelve hundred people.", "1200"),
        ("Zero.", "0"),
        ("It dropped to negative five.", "-5"),
        ("He has one apple.", "1"),
        ("Ninety-nine bottles.", "99"),
    ],
)
def test_number_values(text: str, expected: str) -> None:
    assert extract_answer(text, "number") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The sum of 2 and 3 is 5", "5"),
        ("Answer: 42. I used 3 steps", "42"),
        ("The answer is 42. Check: 40 + 2 took 2 steps.", "42"),
        ("**Answer:** 17\nThat took me 4 minutes.", "17"),
        ("The final answer is: 8, after 3 tries", "8"),
        ("The answer is: \n\n42\n(computed in 3 steps)", "42"),
        ("answer = 9 from 3 squared", "9"),
        ("The answer is 3 + 4 = 7, done in 2 steps", "7"),
        ("The answer is 12 / 4 = 3", "3"),
        ("The answer is 19. Wait, no: the answer is 71. That is 52 more.", "71"),
        ("Natalia sold 48/2 = 24 clips in May.\n#### 72\nExtra note 5", "72"),
        ("#### 1,000", "1000"),
        ("**Step 1:** add 2 and 5\n**7** is the total, 3 left over", "7"),
        ("First 3 then 4.\n2 + 5 = 7", "7"),
        ("The answer is not 5, it is 6", "6"),
        ("I read the 3rd chapter and 5 pages", "5"),
        ("On 1/2/2020 she bought 4 pens", "4"),
        ("Version 1.2.3 fixed 8 bugs", "8"),
        ("Roughly 1e5 atoms, 7 molecules", "7"),
        ("Between two and a half and 3 hours", "3"),
        ("He ran 6 miles, the larger one.", "6"),
        ("One of the boxes holds 9", "9"),
    ],
)
def test_number_markers_and_fallback(text: str, expected: str) -> None:
    assert extract_answer(text, "number") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n  ",
        "I don't know",
        "I think it's the larger one.",
        "nineteen ninety",  # a run of number words that is not one number
        "two and a half",
        "one million",
        "zero point five",
        "three quarters",
        "the twenty-first",
        "1e5",
        "3rd",
        "1/2/2020",
        "1.2.3",
        "\\boxed{\\sqrt{2}} and 3 more",  # the declared answer is not a number
        "The answer is \\boxed{5",  # truncated box
    ],
)
def test_number_abstains(text: str) -> None:
    assert extract_answer(text, "number") is None


def test_number_property_answer_is() -> None:
    rng = random.Random(0)
    values = [rng.randint(-(10**9), 10**9) for _ in range(100)] + [rng.randint(-9999, 9999) for _ in range(100)]
    assert any(abs(n) >= 1000 for n in values) and any(n < 0 for n in values)
    for n in values:
        assert extract_answer(f"The answer is {n:,}.") == str(n), n


# --------------------------------------------------------------------------- boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}}", "1/2"),
        ("\\boxed{\\dfrac{2}{4}}", "1/2"),
        ("First \\boxed{3}, then \\boxed{7}", "7"),
        ("\\boxed{1,234}", "1234"),
        ("\\boxed{68.0}", "68"),
        ("\\boxed{5 \\text{ cm}}", "5"),
        ("\\boxed{x = 5}", "5"),
        ("\\boxed{\\$18}", "18"),
        ("\\boxed{\\boxed{9}}", "9"),
        ("\\boxed{\\sqrt{2}}", "\\sqrt{2}"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed{\\left\\{1, 2\\right\\}}", "\\left\\{1, 2\\right\\}"),
        ("\\boxed {12}", "12"),
    ],
)
def test_boxed(text: str, expected: str) -> None:
    assert extract_answer(text, "boxed") == expected
    assert extract_answer(text) == expected  # auto prefers the box


@pytest.mark.parametrize("text", ["no box here 5", "\\boxed{3} then \\boxed{4", "\\boxed{}", "\\boxed{   }"])
def test_boxed_abstains(text: str) -> None:
    assert extract_answer(text, "boxed") is None


# --------------------------------------------------------------------------- choice

LETTERS = ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(B)", "B"),
        ("B)", "B"),
        ("I choose (b).", "B"),
        ("Answer: B", "B"),
        ("answer: b", "B"),
        ("the answer is (c)", "C"),
        ("The answer is C because it is prime.", "C"),
        ("**Answer:** **D**", "D"),
        ("The correct answer is option a because it fits.", "A"),
        ("option C", "C"),
        ("I'd go with choice d", "D"),
        ("Let me think.\nC", "C"),
        ("Let me think.\n**A.**", "A"),
        ("The answer is \\boxed{C}", "C"),
        ("\\boxed{(b)}", "B"),
        ("The options are (A) 5 and (B) 6. The answer is (B).", "B"),
        ("The answer is A. Wait, no. The answer is D.", "D"),
        ("a) is wrong\nb) is wrong\nThe answer is c.", "C"),
    ],
)
def test_choice(text: str, expected: str) -> None:
    assert extract_answer(text, "choice", LETTERS) == expected
    assert extract_answer(text, "auto", LETTERS) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a cat",
        "A cat sat on the mat.",
        "The answer is a cat.",
        "I have a dog and a bird",
        "(A) 5 (B) 6 (C) 7 (D) 8",  # options echoed, none chosen
        "The answer is E",  # not one of the choices
        "(E)",
        "Answer: Both are fine",
        "\\boxed{42}",
        "",
    ],
)
def test_choice_abstains(text: str) -> None:
    assert extract_answer(text, "choice", LETTERS) is None


def test_choice_default_letters() -> None:
    assert extract_answer("The answer is E", "choice") == "E"
    assert extract_answer("The answer is F", "choice") is None
    assert extract_answer("(b)", "choice", ["a", "b"]) == "B"


# --------------------------------------------------------------------------- comparisons (choices given)

CMP = ["19", "71"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("19 is larger than 71", "19"),  # what the text asserts; the grader marks it wrong
        ("19 is larger than 71.", "19"),
        ("71 is larger than 19", "71"),
        ("The larger number is 71.", "71"),
        ("Between 19 and 71, 71 is larger", "71"),
        ("Between 19 and 71, 71 is clearly the larger.", "71"),
        ("The larger of 19 and 71 is 71.", "71"),
        ("seventy-one is greater than nineteen", "71"),
        ("**71** is bigger than 19", "71"),
        ("Which is larger, 19 or 71? 19 is larger.", "19"),
        ("Is 71 larger than 19? Yes, 71 is larger.", "71"),
        ("19 is smaller than 71, so the answer is 71.", "71"),
        ("The answer is 19. Wait, the answer is 71.", "71"),
        ("Comparing 19 and 71, the answer is 71", "71"),
        ("71", "71"),
        ("71.", "71"),
        ("Comparing them, the larger is 71.0", "71"),
        ("I compared 19 and 71. It is 71.", "71"),
        ("Comparing 19 and 71:\n**71**", "71"),
        ("\\boxed{71}", "71"),
    ],
)
def test_comparison_asserted_choice(text: str, expected: str) -> None:
    assert extract_answer(text, "number", CMP) == expected
    assert extract_answer(text, "auto", CMP) == expected


@pytest.mark.parametrize(
    "text",
    [
        "19 and 71",
        "19 or 71",
        "I think 71",  # mentioned, not asserted
        "19 is not larger than 71",
        "19 is smaller than 71, so 71 is larger",  # two different assertions: ambiguous
        "Is 19 larger than 71?",
        "100 is larger",  # not a choice
        "The answer is 1971",
        "I don't know",
        "",
    ],
)
def test_comparison_abstains(text: str) -> None:
    assert extract_answer(text, "number", CMP) is None
    assert extract_answer(text, "auto", CMP) is None


def test_comparison_without_choices_is_last_number() -> None:
    # Without the candidates the extractor cannot know what is asserted: callers pass choices.
    assert extract_answer("19 is larger than 71", "number") == "71"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No, the answer is yes.", "yes"),
        ("Yes.", "yes"),
        ("The answer is No", "no"),
        ("yes or no, hard to say", None),
        ("Nobody knows", None),
    ],
)
def test_text_choices(text: str, expected: str | None) -> None:
    assert extract_answer(text, "auto", ["yes", "no"]) == expected
    assert extract_answer(text, "choice", ["yes", "no"]) == expected


# --------------------------------------------------------------------------- last_line, text, auto


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Some reasoning.\nParis", "Paris"),
        ("Reasoning\n\n**Answer:** Paris.\n\n", "Paris"),
        ('Answer: "Blue whale"', "Blue whale"),
        ("Final answer: \u201cOslo\u201d.", "Oslo"),
        ("The answer is 'yes'", "yes"),
        ("  just this  ", "just this"),
        # "answer" without "is" or ":" is prose, not a marker
        ("The answer to this question lies in the scattering of light.",
         "The answer to this question lies in the scattering of light"),
        ("The answering machine is broken.", "The answering machine is broken"),
    ],
)
def test_last_line(text: str, expected: str) -> None:
    assert extract_answer(text, "last_line") == expected


@pytest.mark.parametrize("text", ["", "  \n\n ", "**Answer:**", '\n""\n'])
def test_last_line_abstains(text: str) -> None:
    assert extract_answer(text, "last_line") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("  The Blue   Whale!! ", "the blue whale"), ("Paris.\n", "paris"), ("...", None), ("", None)],
)
def test_text(text: str, expected: str | None) -> None:
    assert extract_answer(text, "text") == expected


@pytest.mark.parametrize(
    ("text", "choices", "expected"),
    [
        ("so \\boxed{7} and 9", (), "7"),
        ("The answer is 7", (), "7"),
        ("twenty apples", (), "20"),
        ("The capital is\nParis.", (), "Paris"),
        ("I don't know", (), "I don't know"),
        ("The answer is (B)", ("A", "B"), "B"),
        ("The answer is 7", ("A", "B"), None),  # letter choices: numbers are not options
        ("71 is larger than 19", ("19", "71"), "71"),
    ],
)
def test_auto(text: str, choices: tuple[str, ...], expected: str | None) -> None:
    assert extract_answer(text, "auto", choices) == expected


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        extract_answer("5", "numbers")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        extract_answer("5", "number", "19")


# --------------------------------------------------------------------------- answers_equal


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("0.5", "1/2", True),
        ("2", "2.0", True),
        ("3", "4", False),
        ("1234", "1,234", True),
        ("-0", "0", True),
        ("0.1", "1/10", True),
        ("0.3333333333", "1/3", False),  # exact, no rounding
        ("twenty-one", "21", True),
        ("\\frac{1}{2}", "0.5", True),
        ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", True),  # only math-verify can tell
        ("2\\pi", "\\pi \\cdot 2", True),
        ("\\sqrt{2}", "\\sqrt{3}", False),
        ("Paris", "paris.", True),
        ("paris", "parsi", False),  # math-verify would read both as p*a*r*i*s
        ("3 apples", "3", False),
        ("A", "B", False),
        ("B", "B", True),
        ("", "", False),  # abstentions never match
        ("", "0", False),
    ],
)
def test_answers_equal(a: str, b: str, expected: bool) -> None:
    assert answers_equal(a, b) is expected
    assert answers_equal(b, a) is expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("}}{{\\frac", "$$$"),
        ("\\frac{", "\\sqrt{"),
        ("\\boxed{", "1/0"),
        ("x^{", "^^^"),
        ("\\\\\\", "\\left("),
        ("\x00", "\u200b"),
        ("(" * 50, ")" * 50),
        (None, "1"),
    ],
)
def test_answers_equal_never_raises(a: str, b: str) -> None:
    assert answers_equal(a, b) is False


def test_answers_equal_math_verify_in_worker_thread() -> None:
    # math-verify's signal-based timeout cannot run off the main thread (the router's RPC workers).
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.append(answers_equal("\\frac{\\sqrt{5}}{5}", "\\sqrt{5}/5")))
    worker.start()
    worker.join(60)
    assert results == [True]


def test_answers_equal_keeps_an_outer_alarm() -> None:
    previous = signal.alarm(0)
    try:
        signal.alarm(300)
        assert answers_equal("\\frac{\\sqrt{7}}{7}", "\\sqrt{7}/7")
        remaining = signal.alarm(0)
        assert 200 <= remaining <= 300
    finally:
        signal.alarm(previous)


def test_import_stays_light() -> None:
    code = "import sys, router.verifiers.answers; print('math_verify' in sys.modules, 'sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]
