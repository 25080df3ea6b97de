"""``step_search``: step-level beam search or MCTS over reasoning steps.

A *step* is the text a path generates up to and including the next delimiter (``"\\n"`` by
default), or up to the per-step token cap. A *path* is the prompt followed by its steps; every
node of the search is one path, and it holds its KV cache as one row of a batched
:class:`SequenceState`. Children are expanded by forking the parent's row (``state.select``), so
the prompt is prefilled once and no prefix is ever recomputed. Partial paths are scored in
[0, 1] by a verifier: by default the path's self-likelihood ``exp(mean token logprob)`` (an empty
path scores 0); ``options["verifier"]`` names a registered verifier to use instead, shown the
partial path as a :class:`Completion` with ``answer=""``.

The budget is counted in *expansions*: one expansion is one step generated for one child, i.e.
one row of a ``decode`` call. The search never decodes more rows than ``expansions``.

Beam (``mode="beam"``): the root (the prompt) is the only beam at first. Each round every
expandable beam forks ``branching`` children and all of them decode one step in one batched call
(rows = beams x branching; the call is split only when rows come from different states or need
different step caps near the answer's token cap). The children replace their parent; beams that
cannot be expanded (complete, capped, or left without children because the budget ran short)
stay in the pool, and the top ``beam_width`` paths by score are kept (identical paths, which
greedy sampling produces, count once). When the budget left is smaller than a full round, the
children go to the best beams first, round-robin. The search stops when no kept beam can be
expanded, after ``max_steps`` steps, when the budget is spent, or on cancel/deadline.

MCTS (``mode="mcts"``): UCT selection from the root descends through fully expanded nodes
(``branching`` children tried) by ``Q + c * sqrt(ln N(parent) / N(child))``, skipping exhausted
subtrees; the selected node is expanded with all its missing children in one batched call; each
child's value is its path score (no rollouts) and is backed up as a running mean along the path.
A duplicate child (greedy sampling) counts as an expansion but adds no node. It stops when the
budget is spent, the whole tree is exhausted, or on cancel/deadline.

Answer: the complete (EOS) path with the best score; if none completed, the best partial path
(beam: best kept beam; MCTS: the most visited path), flagged ``truncated_by_budget``. On a
deadline the best path so far is returned with ``truncated_by_deadline`` (a step cut short by the
deadline may end it); on cancel, the best path so far, unflagged.

Nodes: a path is complete when its last step ended with EOS; it is *capped* (not expandable, not
complete) at ``max_steps`` steps, at ``plan.sampling.max_new_tokens`` generated tokens (the cap
for the whole answer), or when the context is full. A node drops its state as soon as it cannot
be expanded again (complete, capped, all children tried, or discarded from the beam); a batched
state is freed once none of its rows is needed.

Options (``plan.options``): ``mode`` (``beam``), ``beam_width`` (2), ``branching`` (2),
``expansions`` (8), ``max_steps`` (6), ``step_tokens`` (48, the per-step token cap),
``delimiter`` (``"\\n"``), ``c_puct`` or ``exploration`` (1.0, the UCT constant), ``verifier``
(none: self-likelihood). Temperature, top-p/top-k and the seed come from ``plan.sampling``; the
decode call ``i`` samples with a seed derived from ``(seed, i)`` and its rows with the engine's
per-row generators, so a run is reproducible and children differ from each other.

Outcome: ``text`` is the chosen path's text (``"".join`` of its steps), ``answer`` its extracted
final answer (``options["answer_kind"]``, default ``auto``).
``candidates`` holds every complete path found plus the final beams (beam) or the chosen path
(MCTS), each with ``scores["path"]`` and ``scores["steps"]`` (MCTS adds ``visits`` and ``value``);
the chosen one has ``chosen=True``. ``usage``: the prompt's tokens, the tokens generated over all
expansions, ``samples`` = expansions, ``model_calls`` = decode calls. For tests and debugging,
:attr:`StepSearch.last_report` holds a :class:`SearchReport` of the last run that finished (with
concurrent runs on one instance, whichever finished last). Complete paths are reported to
``ctx.on_sample`` as they are found.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from router.domain import Candidate, Flags, Outcome, Plan, Query, Usage
from router.engine import Completion, FinishReason, SequenceState
from router.errors import InvalidArgumentError
from router.strategies import options as opt
from router.strategies.base import Strategy, StrategyContext
from router.verifiers import ScoredItem, Verifier, get_verifier
from router.verifiers.answers import extract_answer

_INTERRUPTED = (FinishReason.CANCELLED, FinishReason.DEADLINE)


@dataclass(frozen=True)
class StepOptions:
    mode: str = "beam"
    beam_width: int = 2
    branching: int = 2
    expansions: int = 8
    max_steps: int = 6
    step_tokens: int = 48
    delimiter: str = "\n"
    c_puct: float = 1.0
    verifier: str = ""

    @classmethod
    def parse(cls, opts: Mapping[str, Any]) -> StepOptions:
        def integer(name: str, default: int, low: int) -> int:
            value = opts.get(name, default)
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgumentError(f"options.{name}", f"must be an integer >= {low}, got {value!r}")
            return value

        mode = str(opts.get("mode", cls.mode))
        if mode not in ("beam", "mcts"):
            raise InvalidArgumentError("options.mode", f"must be 'beam' or 'mcts', got {mode!r}")
        delimiter = opts.get("delimiter", cls.delimiter)
        if not isinstance(delimiter, str) or not delimiter:
            raise InvalidArgumentError("options.delimiter", "must be a non-empty string")
        raw_c = opts.get("c_puct", opts.get("exploration", cls.c_puct))
        try:
            c_puct = float(raw_c)
        except (TypeError, ValueError):
            raise InvalidArgumentError("options.c_puct", f"must be a number >= 0, got {raw_c!r}") from None
        if not math.isfinite(c_puct) or c_puct < 0:
            raise InvalidArgumentError("options.c_puct", f"must be a number >= 0, got {raw_c!r}")
        return cls(
            mode=mode,
            beam_width=integer("beam_width", cls.beam_width, 1),
            branching=integer("branching", cls.branching, 1),
            expansions=integer("expansions", cls.expansions, 0),
            max_steps=integer("max_steps", cls.max_steps, 1),
            step_tokens=integer("step_tokens", cls.step_tokens, 1),
            delimiter=delimiter,
            c_puct=c_puct,
            verifier=str(opts.get("verifier") or ""),
        )


@dataclass
class SearchReport:
    """What the last run did (for tests and debugging)."""

    mode: str
    expansions: int = 0  # rows decoded: one step for one child each
    decode_calls: int = 0
    rows_per_call: list[int] = field(default_factory=list)
    nodes: int = 0  # children kept in the tree (duplicates excluded)
    complete: int = 0  # complete (EOS) paths found
    stopped_by: str = ""  # complete | exhausted | max_steps | budget | deadline | cancelled
    steps: list[str] = field(default_factory=list)  # the chosen path's steps; "".join(steps) == text
    step_tokens: list[list[int]] = field(default_factory=list)  # the chosen path's tokens, step by step


@dataclass(eq=False)
class _Node:
    parent: _Node | None
    tokens: list[int]  # generated tokens of the whole path (prompt excluded)
    logprobs: list[float]
    step_ends: list[int]  # token offset where each step ends; len == number of steps
    finish: FinishReason | None  # how the last step ended (None for the root)
    state: SequenceState | None = None  # row ``row`` holds this path; None once it is not needed
    row: int = 0
    terminal: bool = False  # cannot be expanded (complete, capped or interrupted)
    score: float = 0.0
    # MCTS
    children: list[_Node] = field(default_factory=list)
    tried: int = 0  # children decoded from this node, duplicates included
    visits: int = 0
    value_sum: float = 0.0
    exhausted: bool = False

    @property
    def depth(self) -> int:
        return len(self.step_ends)

    @property
    def complete(self) -> bool:
        return self.finish is FinishReason.EOS

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def release(self) -> None:
        self.state = None


def uct(child: _Node, parent_visits: int, c: float) -> float:
    """Upper confidence bound of a child: mean value plus ``c * sqrt(ln N(parent) / N(child))``."""
    if child.visits == 0:
        return math.inf
    return child.value + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def allocate(n_beams: int, branching: int, budget: int) -> list[int]:
    """Children per beam (beams best first) for one round: ``branching`` each, or fewer, best beams
    first and round-robin, when the budget cannot pay for a full round."""
    counts = [0] * n_beams
    for j in range(min(max(budget, 0), n_beams * branching)):
        counts[j % n_beams] += 1
    return counts


def call_seed(seed: int | None, call: int) -> int | None:
    """The seed of decode call ``call`` of a run seeded with ``seed`` (None stays None)."""
    if seed is None:
        return None
    return (seed * 1_000_003 + 7_919 * (call + 1)) % 2**63


class _Stop(Exception):
    """Cancelled or out of time: no further decode call may start."""


class _Search:
    """One run: the tree, the tally and the stop state."""

    def __init__(self, query: Query, plan: Plan, ctx: StrategyContext, opts: StepOptions) -> None:
        self.query, self.plan, self.ctx, self.opts = query, plan, ctx, opts
        self.engine = ctx.engine
        self.params = replace(plan.sampling, stop=(opts.delimiter,))
        self.verifier: Verifier | None = get_verifier(opts.verifier) if opts.verifier else None
        self.answer_kind = str(plan.options.get("answer_kind", "auto"))
        self.usage = Usage()
        self.flags = Flags()
        self.report = SearchReport(mode=opts.mode)
        self.completes: list[_Node] = []
        self.prompt_len = 0
        self.cancelled = False

    # -- budget and interruption ---------------------------------------------------------------
    @property
    def budget_left(self) -> int:
        return self.opts.expansions - self.report.expansions

    @property
    def stopped(self) -> bool:
        return self.cancelled or self.flags.truncated_by_deadline

    def check(self) -> None:
        if self.ctx.cancel.cancelled:
            self.cancelled = True
        elif self.ctx.deadline is not None and time.monotonic() >= self.ctx.deadline:
            self.flags.truncated_by_deadline = True
        if self.stopped:
            raise _Stop

    # -- nodes ---------------------------------------------------------------------------------
    def root(self) -> _Node:
        ids = self.engine.tokenizer.encode_prompt(self.query.prompt)
        self.usage.prompt_tokens = self.prompt_len = len(ids)
        self.check()  # spare the prefill when already stopped
        node = _Node(parent=None, tokens=[], logprobs=[], step_ends=[], finish=None, state=self.engine.prefill(ids))
        self.settle(node)
        return node

    def step_cap(self, node: _Node) -> int:
        """Tokens the next step of ``node`` may generate (0: none)."""
        room = self.engine.context_length - (self.prompt_len + len(node.tokens))
        return max(0, min(self.opts.step_tokens, self.plan.sampling.max_new_tokens - len(node.tokens), room))

    def settle(self, node: _Node) -> None:
        """Mark ``node`` terminal when it cannot grow, and drop its state then."""
        node.terminal = (
            node.complete
            or node.finish in _INTERRUPTED
            or node.depth >= self.opts.max_steps
            or self.step_cap(node) == 0
        )
        if node.terminal:
            node.exhausted = True
            node.release()

    def expand(self, requests: Sequence[tuple[_Node, int]]) -> list[tuple[_Node, _Node]]:
        """Decode one step for ``k`` new children of each ``(parent, k)``; returns (parent, child).

        Rows that share a source state and a step cap go in one decode call. Every row decoded is
        an expansion; a child cut off before its first token is dropped. When cancelled or past
        the deadline, raises :class:`_Stop` carrying the (parent, child) pairs decoded so far.
        """
        groups: dict[tuple[int, int], list[tuple[_Node, int]]] = {}
        for parent, k in requests:
            if k > 0:
                if parent.state is None or parent.terminal:
                    raise AssertionError("only a live node can be expanded")
                groups.setdefault((id(parent.state), self.step_cap(parent)), []).append((parent, k))
        out: list[tuple[_Node, _Node]] = []
        try:
            for (_, cap), group in groups.items():
                self.check()
                out.extend(self.decode_group(group, cap))
                if self.stopped:
                    break
        except _Stop:
            pass
        new = [c for _, c in out]
        for child, score in zip(new, self.score(new), strict=True):
            child.score = score
        if self.stopped:
            raise _Stop(out)
        return out

    def decode_group(self, group: list[tuple[_Node, int]], cap: int) -> list[tuple[_Node, _Node]]:
        """One decode call: ``k`` rows forked from each parent's row, all in one source state."""
        parents = [p for p, k in group for _ in range(k)]
        if len(parents) > self.budget_left:
            raise AssertionError("the expansion budget would be exceeded")
        source = group[0][0].state
        assert source is not None
        state = source.select([p.row for p in parents])
        params = replace(self.params, max_new_tokens=cap, seed=call_seed(self.params.seed, self.report.decode_calls))
        comps = self.engine.decode(state, params, cancel=self.ctx.cancel, deadline=self.ctx.deadline)
        self.report.decode_calls += 1
        self.report.rows_per_call.append(len(parents))
        self.report.expansions += len(parents)
        self.usage.model_calls += 1
        self.usage.samples += len(parents)
        self.usage.completion_tokens += sum(c.completion_tokens for c in comps)
        out = []
        for row, (parent, comp) in enumerate(zip(parents, comps, strict=True)):
            parent.tried += 1
            if comp.finish_reason is FinishReason.DEADLINE:
                self.flags.truncated_by_deadline = True
            elif comp.finish_reason is FinishReason.CANCELLED:
                self.cancelled = True
            if comp.finish_reason in _INTERRUPTED and not comp.token_ids:
                continue  # never started: no child
            child = _Node(
                parent=parent,
                tokens=parent.tokens + comp.token_ids,
                logprobs=parent.logprobs + comp.logprobs,
                step_ends=[*parent.step_ends, len(parent.tokens) + comp.completion_tokens],
                finish=comp.finish_reason,
                state=state,
                row=row,
            )
            self.settle(child)
            out.append((parent, child))
        return out

    def found_complete(self, node: _Node) -> None:
        self.completes.append(node)
        self.report.complete += 1
        if self.ctx.on_sample is not None:
            self.ctx.on_sample(Candidate(completion=self.completion(node), scores={"path": node.score}))

    # -- scoring -------------------------------------------------------------------------------
    def completion(self, node: _Node, index: int = 0) -> Completion:
        return Completion(
            index=index,
            text=self.engine.tokenizer.decode(node.tokens),
            token_ids=list(node.tokens),
            logprobs=list(node.logprobs),
            finish_reason=node.finish or FinishReason.LENGTH,
            prompt_tokens=self.prompt_len,
        )

    def score(self, nodes: Sequence[_Node]) -> list[float]:
        if not nodes:
            return []
        if self.verifier is None:
            return [math.exp(sum(n.logprobs) / len(n.logprobs)) if n.logprobs else 0.0 for n in nodes]
        question = self.query.question
        items = [ScoredItem(question, self.completion(n, i), answer="") for i, n in enumerate(nodes)]
        return [min(1.0, max(0.0, float(s))) for s in self.verifier.score(items, self.engine)]

    # -- beam ----------------------------------------------------------------------------------
    def beam(self) -> tuple[_Node | None, list[_Node]]:
        beams: list[_Node] = []
        try:
            beams = [self.root()]
            while True:
                live = [b for b in beams if not b.terminal]
                if not live:
                    self.report.stopped_by = "complete" if all(b.complete for b in beams) else (
                        "max_steps" if any(b.depth >= self.opts.max_steps for b in beams) else "exhausted")
                    break
                if self.budget_left <= 0:
                    self.report.stopped_by = "budget"
                    break
                counts = allocate(len(live), self.opts.branching, self.budget_left)
                try:
                    pairs = self.expand(list(zip(live, counts, strict=True)))
                except _Stop as stop:
                    pairs = stop.args[0] if stop.args else []
                    beams = self.next_beams(beams, pairs)
                    raise
                beams = self.next_beams(beams, pairs)
        except _Stop:
            self.report.stopped_by = "cancelled" if self.cancelled else "deadline"
        for b in beams:
            b.release()
        if self.completes:
            chosen: _Node | None = max(self.completes, key=lambda n: n.score)
        else:
            chosen = beams[0] if beams else None  # the best partial beam (the root: nothing generated)
        return chosen, [*self.completes, *(b for b in beams if b not in self.completes and b.parent is not None)]

    def next_beams(self, beams: list[_Node], pairs: list[tuple[_Node, _Node]]) -> list[_Node]:
        expanded = {id(p) for p, _ in pairs}
        pool: list[_Node] = [b for b in beams if id(b) not in expanded]
        for b in beams:
            if id(b) in expanded:
                b.release()  # replaced by its children: a beam is expanded once
        seen = {tuple(b.tokens) for b in pool}
        for _, child in pairs:
            key = tuple(child.tokens)
            if key in seen:
                child.release()
                continue
            seen.add(key)
            pool.append(child)
            self.report.nodes += 1
            if child.complete:
                self.found_complete(child)
        pool.sort(key=lambda n: n.score, reverse=True)  # stable: ties keep pool order
        for dropped in pool[self.opts.beam_width:]:
            dropped.release()
        return pool[: self.opts.beam_width]

    # -- MCTS ----------------------------------------------------------------------------------
    def mcts(self) -> tuple[_Node | None, list[_Node]]:
        root: _Node | None = None
        try:
            root = self.root()
            while True:
                if root.exhausted:
                    self.report.stopped_by = "exhausted"
                    break
                if self.budget_left <= 0:
                    self.report.stopped_by = "budget"
                    break
                leaf = self.select(root)
                if leaf is None:
                    continue  # select marked a dead end exhausted; try again
                k = min(self.opts.branching - leaf.tried, self.budget_left)
                try:
                    pairs = self.expand([(leaf, k)])
                except _Stop as stop:
                    self.attach(stop.args[0] if stop.args else [])
                    raise
                self.attach(pairs)
        except _Stop:
            self.report.stopped_by = "cancelled" if self.cancelled else "deadline"
        if root is None:
            return None, []
        self.release_tree(root)
        if self.completes:
            chosen = max(self.completes, key=lambda n: n.score)
        else:
            chosen = root
            while chosen.children:
                chosen = max(chosen.children, key=lambda n: (n.visits, n.value))
        cands = list(self.completes)
        if chosen is not root and chosen not in cands:
            cands.append(chosen)
        return chosen, cands

    def select(self, root: _Node) -> _Node | None:
        """Descend by UCT to a node with untried children; None when a dead end was found."""
        node = root
        while node.tried >= self.opts.branching:
            open_children = [c for c in node.children if not c.exhausted]
            if not open_children:
                node.exhausted = True
                node.release()
                self.update_exhausted(node.parent)
                return None
            node = max(open_children, key=lambda c: uct(c, node.visits, self.opts.c_puct))
        return node

    def attach(self, pairs: list[tuple[_Node, _Node]]) -> None:
        for parent, child in pairs:
            if any(c.tokens == child.tokens for c in parent.children):
                child.release()  # a duplicate (greedy): the expansion is spent, no new node
                continue
            parent.children.append(child)
            self.report.nodes += 1
            if child.complete:
                self.found_complete(child)
            node: _Node | None = child
            while node is not None:  # back up the child's value
                node.visits += 1
                node.value_sum += child.score
                node = node.parent
        for parent in {id(p): p for p, _ in pairs}.values():
            if parent.tried >= self.opts.branching:
                parent.release()  # every child tried: its state is no longer needed
            self.update_exhausted(parent)

    def update_exhausted(self, node: _Node | None) -> None:
        while node is not None:
            done = node.terminal or (
                node.tried >= self.opts.branching and all(c.exhausted for c in node.children)
            )
            if not done:
                return
            node.exhausted = True
            node.release()
            node = node.parent

    @staticmethod
    def release_tree(root: _Node) -> None:
        stack = [root]
        while stack:
            node = stack.pop()
            node.release()
            stack.extend(node.children)

    # -- outcome -------------------------------------------------------------------------------
    def outcome(self, chosen: _Node | None, considered: list[_Node]) -> Outcome:
        if chosen is None or chosen.parent is None:  # stopped before any step
            self.flags.truncated_by_budget = not self.stopped
            return Outcome(text="", answer="", candidates=[], votes={}, usage=self.usage, flags=self.flags)
        if not chosen.complete and not self.stopped:
            self.flags.truncated_by_budget = True
        text, steps = split_steps(self.engine.tokenizer.decode, chosen.tokens, chosen.step_ends)
        self.report.steps = steps
        bounds = [0, *chosen.step_ends]
        self.report.step_tokens = [chosen.tokens[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        considered = sorted(considered, key=lambda n: n.score, reverse=True)
        cands = []
        for i, node in enumerate(considered):
            scores = {"path": node.score, "steps": float(node.depth)}
            if self.opts.mode == "mcts":
                scores.update(visits=float(node.visits), value=node.value)
            completion = self.completion(node, i)
            answer = extract_answer(completion.text, self.answer_kind) or ""
            cands.append(Candidate(completion=completion, answer=answer, scores=scores, chosen=node is chosen))
        answer = next((c.answer for c in cands if c.chosen), "") or extract_answer(text, self.answer_kind) or ""
        return Outcome(text=text, answer=answer, candidates=cands, votes={}, usage=self.usage, flags=self.flags)


def split_steps(
    decode: Callable[[list[int]], str], tokens: Sequence[int], step_ends: Sequence[int]
) -> tuple[str, list[str]]:
    """The text of a path and its steps, with ``"".join(steps) == text``.

    The text is decoded in one piece; a step boundary is the length of the text decoded up to
    that step, unless a multi-byte character straddles it, in which case the character goes to
    the next step.
    """
    text = decode(list(tokens))
    bounds = [0]
    for end in step_ends[:-1]:
        prefix = decode(list(tokens[:end])).rstrip("\ufffd")
        bounds.append(len(prefix) if text.startswith(prefix) and len(prefix) >= bounds[-1] else bounds[-1])
    bounds.append(len(text))
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


class StepSearch(Strategy):
    """Step-level beam search or MCTS; see the module docstring."""

    name = "step_search"
    # Most options are checked by StepOptions.parse, as run() reads them (see check_options).
    option_checks = {**{f.name: lambda v: None for f in fields(StepOptions)}, "exploration": lambda v: None,
                     "verifier": lambda v: None if v in ("", None) else opt.verifier(v),
                     "answer_kind": opt.answer_kind}

    def __init__(self) -> None:
        self.last_report: SearchReport | None = None

    def check_options(self, options: Mapping[str, Any]) -> list[str]:
        """Names and the verifier/answer kind as declared; the rest as :meth:`StepOptions.parse` reads them."""
        out = super().check_options(options)
        try:
            StepOptions.parse(options)
        except InvalidArgumentError as exc:
            out.append(f"{exc.field.removeprefix('options.')}: {exc.description}")
        return out

    def run(self, query: Query, plan: Plan, ctx: StrategyContext) -> Outcome:
        opts = StepOptions.parse(plan.options)
        search = _Search(query, plan, ctx, opts)
        chosen, considered = search.beam() if opts.mode == "beam" else search.mcts()
        outcome = search.outcome(chosen, considered)
        self.last_report = search.report
        return outcome
