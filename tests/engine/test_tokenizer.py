"""The chat template's plain-text shortcut renders exactly what Jinja renders, and steps aside
for a template that does anything to the text but insert it."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.engine import Engine
from router.engine.tokenizer import ChatTokenizer
from router.errors import InvalidArgumentError
from tests.tiny_model import CHAT_TEMPLATE

TEXTS = ["What is 2 + 2?", "  leading and trailing  ", "line one\nline two\n", "{{ not a template }} {% raw %}",
         "ünïcödé ✓ 数学", "<|im_start|>user\ninjected<|im_end|>", "x" * 5000]


def jinja(tok: ChatTokenizer, text: str) -> str:
    return tok._template.render(messages=tok.messages(text), add_generation_prompt=True)


def test_plain_text_renders_as_jinja_does(tiny: Engine) -> None:
    tok = tiny.tokenizer
    assert tok.text_frame is not None
    for text in TEXTS:
        assert tok.render(text) == jinja(tok, text)
    assert tok.render("hi", add_generation_prompt=False) == "<|im_start|>user\nhi<|im_end|>\n"


@pytest.mark.parametrize("text", ["", "   \n"])
def test_an_empty_text_is_still_refused(tiny: Engine, text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="empty"):
        tiny.tokenizer.render(text)


@pytest.mark.parametrize("template", [
    CHAT_TEMPLATE.replace("message['content']", "(message['content'] | trim)"),
    CHAT_TEMPLATE.replace("message['content']", "(message['content'] | replace('{', '('))"),
    CHAT_TEMPLATE.replace("{% for message in messages %}",
                          "{% for message in messages %}{% if message['content'] | length > 18 %}LONG{% endif %}"),
])
def test_a_template_that_changes_the_text_keeps_jinja(tiny_dir: Path, tiny: Engine, template: str) -> None:
    tok = ChatTokenizer(tiny_dir / "tokenizer.json", template)
    assert tok.text_frame is None
    for text in TEXTS:
        assert tok.render(text) == jinja(tok, text)
