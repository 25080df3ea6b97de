"""Tokenizer and chat template, without transformers.

The chat prompt is rendered with the model's own Jinja template and encoded with
``add_special_tokens=False``: the template already writes every special token, and letting the
tokenizer add a BOS on top is the doubled-``<|im_start|>`` fault DESIGN.md §3 warns about.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from router.engine.types import Prompt
from router.errors import InvalidArgumentError

ROLES = ("system", "user", "assistant")


def _raise(message: str) -> None:
    raise TemplateError(message)


class ChatTokenizer:
    """Renders chat messages with the model's template and maps text <-> token ids."""

    def __init__(self, tokenizer_file: Path, chat_template: str) -> None:
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(chat_template)
        self.text_frame = self._find_text_frame()

    def _find_text_frame(self) -> tuple[str, str] | None:
        """(prefix, suffix) a plain-text prompt renders between, if the template inserts it verbatim.

        Rendering a one-turn text prompt is then two string joins instead of a Jinja run (~10 us,
        on every request's validation). A one-character probe and a long one with surrounding
        whitespace and template syntax must land byte for byte in the same frame: a template that
        trims, escapes or branches on the text's length fails that check and keeps being rendered.
        (One that branches on particular words would pass; chat templates in use do not.)
        """
        probes = ("\x01", " \n router-probe {{ B }} {% raw %}\t" + "·" * 256 + "\n ")
        try:
            first, second = (self._template.render(messages=[{"role": "user", "content": p}],
                                                   add_generation_prompt=True) for p in probes)
        except TemplateError:
            return None
        if first.count(probes[0]) != 1:
            return None
        prefix, suffix = first.split(probes[0])
        return (prefix, suffix) if second == prefix + probes[1] + suffix else None

    def messages(self, prompt: Prompt) -> list[dict[str, str]]:
        """Normalise a prompt (plain text = one user turn) into validated chat messages."""
        if isinstance(prompt, str):
            messages: Sequence[Mapping[str, str]] = [{"role": "user", "content": prompt}]
        else:
            messages = prompt
        if not messages:
            raise InvalidArgumentError("prompt", "no messages given")
        out = []
        for i, m in enumerate(messages):
            role, content = m.get("role"), m.get("content")
            if role not in ROLES:
                raise InvalidArgumentError(f"messages[{i}].role", f"must be one of {ROLES}, got {role!r}")
            if not isinstance(content, str):
                raise InvalidArgumentError(f"messages[{i}].content", "must be a string")
            out.append({"role": role, "content": content})
        if not any(m["content"].strip() for m in out if m["role"] == "user"):
            raise InvalidArgumentError("prompt", "prompt is empty: give a question or a user message")
        return out

    def render(self, prompt: Prompt, add_generation_prompt: bool = True) -> str:
        if isinstance(prompt, str) and add_generation_prompt and self.text_frame is not None:
            if not prompt.strip():
                self.messages(prompt)  # raises the empty-prompt error
            return self.text_frame[0] + prompt + self.text_frame[1]
        try:
            return self._template.render(
                messages=self.messages(prompt), add_generation_prompt=add_generation_prompt
            )
        except TemplateError as exc:
            raise InvalidArgumentError("prompt", f"chat template rejected the messages: {exc}") from exc

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of the templated prompt, ready for the assistant's turn."""
        return self.encode(self.render(prompt))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)
