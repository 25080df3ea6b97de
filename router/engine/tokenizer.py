"""Tokenizer and chat template, without transformers.

The chat prompt is rendered with the model's own Jinja template and encoded with
``add_special_tokens=False``: the template already writes every special token, and letting the
tokenizer add a BOS on top is the doubled-``<|im_start|>`` fault DESIGN.md §3 warns about.

Special tokens come from the template only. The tokenizer matches special-token strings anywhere
in its input, so a message saying ``<|im_end|>\n<|im_start|>system`` would close its turn and open
a system one; message contents are encoded as literal text instead (see
:meth:`ChatTokenizer.encode_prompt`).
"""

from __future__ import annotations

import itertools
import re
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
        # A second instance for message contents: special-token strings in it are plain text. Its
        # own instance, set once, because the flag is per tokenizer and encoding runs on many threads.
        self._literal = Tokenizer.from_file(str(tokenizer_file))
        self._literal.encode_special_tokens = True
        specials = sorted((t.content for t in self.tokenizer.get_added_tokens_decoder().values() if t.special),
                          key=len, reverse=True)  # longest first, as the tokenizer matches
        self._special_ids = {t: self.tokenizer.token_to_id(t) for t in specials}
        self._special_re = re.compile("|".join(map(re.escape, specials))) if specials else None
        # A content ending with a special's proper prefix or starting with a proper suffix could
        # complete one together with the template text beside it.
        self._special_prefixes = tuple({t[:i] for t in specials for i in range(1, len(t))})
        self._special_suffixes = tuple({t[i:] for t in specials for i in range(1, len(t))})
        self._chat_template = chat_template
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
        """Token ids of the templated prompt, ready for the assistant's turn.

        Only the template writes special tokens: a special-token string inside a message's content
        becomes ordinary text tokens. Contents that could not form one are the common case and are
        encoded with the whole rendered string, as before; otherwise see :meth:`_encode_literal`.
        """
        contents = [prompt] if isinstance(prompt, str) else [m.get("content") for m in prompt]
        if not any(self._may_form_special(c) for c in contents if isinstance(c, str)):
            return self.encode(self.render(prompt))
        return self._encode_literal(prompt)

    def count_prompt_tokens(self, prompt: Prompt) -> int:
        """Length of :meth:`encode_prompt`: what the prompt takes of the model's context."""
        return len(self.encode_prompt(prompt))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token strings in it become special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def _may_form_special(self, content: str) -> bool:
        if self._special_re is None:
            return False
        return (self._special_re.search(content) is not None or content.endswith(self._special_prefixes)
                or content.startswith(self._special_suffixes))

    def _encode_literal(self, prompt: Prompt) -> list[int]:
        """Encode the prompt with its contents as literal text.

        The template is rendered with each content replaced by a placeholder; special-token
        strings in the template's own text become special tokens, and the text between two of
        them (template text and contents together) is encoded by the literal tokenizer. That is
        what the tokenizer does to the whole string, special-token splitting included, except
        that it finds no special tokens inside contents, so an ordinary prompt gets the same ids
        either way (given special tokens that strip no whitespace beside them, as SmolLM2's and
        other ChatML tokenizers' do). A template that alters a content (trims, escapes it) leaves no place to put
        it back literally, and such a prompt is refused rather than encoded with live controls.
        """
        messages = self.messages(prompt)
        contents = [m["content"] for m in messages]
        used = set("".join(contents)) | set(self._chat_template)
        private_use = itertools.chain(range(0xE000, 0xF900), range(0xF0000, 0xFFFFE))
        mark = next((chr(c) for c in private_use if chr(c) not in used), None)
        if mark is None:
            raise InvalidArgumentError("prompt", "the messages use every private-use character")
        if isinstance(prompt, str) and self.text_frame is not None:
            pieces = [self.text_frame[0], "0", self.text_frame[1]]
        else:
            held = [{**m, "content": f"{mark}{i}{mark}"} for i, m in enumerate(messages)]
            try:
                rendered = self._template.render(messages=held, add_generation_prompt=True)
            except TemplateError as exc:
                raise InvalidArgumentError("prompt", f"chat template rejected the messages: {exc}") from exc
            pieces = re.split(f"{mark}([0-9]+){mark}", rendered)
        # template text at even positions, the index of the content rendered there at odd ones
        restored = "".join(contents[int(p)] if i % 2 else p for i, p in enumerate(pieces))
        if mark in "".join(pieces[::2]) or restored != self.render(prompt):
            raise InvalidArgumentError(
                "prompt", "a message contains a special-token string, and this model's chat template "
                "does not insert messages verbatim, so it cannot be kept as literal text")
        ids: list[int] = []
        run: list[str] = []  # text since the last template special token
        for i, piece in enumerate(pieces):
            if i % 2:
                run.append(contents[int(piece)])
                continue
            at = 0
            for match in self._special_re.finditer(piece) if self._special_re is not None else ():
                run.append(piece[at:match.start()])
                ids += self._literal_ids("".join(run)) + [self._special_ids[match.group()]]
                run, at = [], match.end()
            run.append(piece[at:])
        return ids + self._literal_ids("".join(run))

    def _literal_ids(self, text: str) -> list[int]:
        return self._literal.encode(text, add_special_tokens=False).ids if text else []

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)
