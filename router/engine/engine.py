"""The generation engine: an ONNX Runtime decoder with a KV cache, driven from Python.

Why it looks like this:
- Batch-1 decode on CPU is memory-bound (every weight is read once per token), so the way to make
  several samples cheap is to decode them as one batch: ``generate(..., n)`` prefills the prompt
  once, replicates its cache ``n`` times and samples all rows together.
- The cache stays in ONNX Runtime ``OrtValue``s bound with IOBinding, so on CUDA it never leaves
  the device; only the last position's logits come back to the host for sampling.
- Tree search needs more than ``generate``: :meth:`prefill`, :meth:`SequenceState.fork`,
  :meth:`extend` and :meth:`decode` expose the state so a caller can expand children from a
  partial answer and stop each at a step delimiter (a stop string such as ``"\\n"``).
- Cancellation and deadlines are checked before every decode step; a stopped call returns what
  it has, marked ``cancelled`` or ``deadline``, and its cache is released on return.
- The KV cache layout is one the build has a decoder for (``Manifest.kv_caches``): ``concat``
  (every provider: each pass returns caches one step longer) or ``inplace`` (CPU only:
  fixed-capacity host buffers the decoder writes in place, see :mod:`router.engine.state`), which
  batched sampling runs faster on. The default build has both over one weights file; ``auto``
  (:func:`choose_kv_cache`) takes ``inplace`` on the CPU provider and ``concat`` elsewhere.
- Greedy decode steps on the in-place graph run its LM head on an int8 copy and recompute in
  float32 only the tokens that could be the argmax (or are likely): the float32 head's token for a
  fraction of the head's reads (:mod:`router.engine.greedy_head`).
- Optionally a second build of the *same weights* (the q4 variant: the GGUF's 4-bit blocks) runs
  the one-row, one-token decode steps, where it is faster (it reads half the bytes), while
  prefills and batches stay on the main decoder, where q4 is slower. Both read and write the same cache layout, so a
  sequence moves between them freely.

The engine knows ONNX Runtime, the tokenizer and sampling; it knows nothing of policies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from router.engine.device_select import DeviceTokenSelector
from router.engine.greedy_head import EXACT_LOGITS, HEAD_CANDIDATES, GreedyLogits
from router.engine.manifest import KV_CACHES, Manifest, load_manifest
from router.engine.sampling import row_generators, select_tokens
from router.engine.session import CPU, SessionSettings, device_of, first_installed, open_session
from router.engine.state import SequenceState, inplace_capacity
from router.engine.tokenizer import ChatTokenizer
from router.engine.types import CancelToken, Completion, FinishReason, Prompt, SamplingParams
from router.errors import InvalidArgumentError, ModelIntegrityError, ProviderUnavailableError

log = logging.getLogger(__name__)
TokenCallback = Callable[[list[tuple[int, int]]], None]
# From this many rows selecting on the device is at least as fast (H200, gpu_check's threshold sweep
# at cd25e8a, tokens/s device vs host: n=8 812 vs 815 with top-p 0.95 and 680 vs 814 at T=0.7;
# n=16 1559 vs 1311 with top-p 0.95 (the ladder's setting) and 1698 vs 1721 at T=0.7; n=24 and up
# the device wins both). See README "Token selection on the device".
DEVICE_SELECTION_MIN_ROWS = 16


def choose_kv_cache(wanted: str, manifest: Manifest, provider: str, single_row: bool = False) -> str:
    """The KV cache layout to run ``manifest``'s build with: ``wanted``, or for ``"auto"`` the
    in-place cache when the build has it, the session runs on the CPU provider and no single-row
    decoder shares the cache (the q4 build has the concat layout only), else the build's default.

    Why in place on the CPU: batched decode steps stop copying every row's cache (n=8 sampling
    4-8 % faster in bench/results/kv_layout.md, the same greedy tokens); ONNX Runtime runs its
    GroupQueryAttention in float32 on the CPU provider only.
    """
    if wanted == "auto":
        inplace = "inplace" in manifest.kv_caches and provider == CPU and not single_row
        return "inplace" if inplace else manifest.kv_cache
    if wanted not in KV_CACHES:
        raise InvalidArgumentError("kv_cache", f"must be 'auto' or one of {KV_CACHES}, got {wanted!r}")
    manifest.decoder_for(wanted)  # a layout the build has
    return wanted


@dataclass
class EngineStats:
    """Counters for tests and metrics; ``decode_steps`` counts batched decode forwards."""

    forward_calls: int = 0
    decode_steps: int = 0
    generated_tokens: int = 0
    single_row_forwards: int = 0  # forwards run by the single-row decoder
    device_selections: int = 0  # decode steps whose tokens were selected on the decoder's device
    int8_head_steps: int = 0  # greedy decode steps run on the int8 head (router/engine/greedy_head.py)
    int8_head_recomputed: int = 0  # logits those steps recomputed in float32


class Engine:
    """Generates completions from one built model."""

    def __init__(
        self,
        model_dir: Path,
        manifest: Manifest,
        session: ort.InferenceSession,
        max_samples: int = 64,
        single_row_session: ort.InferenceSession | None = None,
        device_selection: bool | None = None,
        device_selection_min_rows: int = DEVICE_SELECTION_MIN_ROWS,
        kv_cache: str | None = None,
        int8_greedy_head: bool = True,
    ) -> None:
        """``device_selection``: pick sampled tokens on the decoder's device
        (:mod:`router.engine.device_select`) in decode steps of at least ``device_selection_min_rows``
        rows; None = on CUDA only, True also on the CPU provider. ``kv_cache``: the layout of
        ``session``'s decoder (None: the manifest's default). ``int8_greedy_head``: greedy steps run the
        decoder's int8 head when it has one (:mod:`router.engine.greedy_head`)."""
        self.model_dir = model_dir
        self.manifest = manifest
        self.max_samples = max_samples
        self.tokenizer = ChatTokenizer(model_dir / manifest.tokenizer_file, manifest.chat_template)
        self._session = session
        self._single_row = single_row_session
        self._device = device_of(session)
        arch = manifest.architecture
        self._past_names = [f"past_key_values.{i}.{kv}" for i in range(arch.num_layers) for kv in ("key", "value")]
        self._present_names = [f"present.{i}.{kv}" for i in range(arch.num_layers) for kv in ("key", "value")]
        self._eos = frozenset(manifest.eos_token_ids)
        self._head_switch = EXACT_LOGITS in {i.name for i in session.get_inputs()}
        self._greedy_head = int8_greedy_head and self._head_switch
        self._stats_lock = threading.Lock()
        self.stats = EngineStats()
        self.kv_cache = kv_cache or manifest.kv_cache
        if self.kv_cache not in KV_CACHES:
            raise ModelIntegrityError(f"{manifest.name}'s manifest names an unknown KV cache layout "
                                      f"{self.kv_cache!r}; rebuild it with `router models build {manifest.name}`")
        self._inplace = self.kv_cache == "inplace"
        if self._inplace and self._device != "cpu":
            raise ProviderUnavailableError(
                f"{manifest.name} writes its KV cache in place with GroupQueryAttention, which ONNX Runtime runs in "
                "float32 on the CPU provider only; on a GPU serve a build with the concat cache (e.g. "
                "smollm2-135m-instruct)"
            )
        self._selector: DeviceTokenSelector | None = None
        self._selector_min_rows = max(1, device_selection_min_rows)
        if device_selection:
            self._selector = DeviceTokenSelector(session.get_providers())
        elif device_selection is None and self._device != "cpu":
            try:
                self._selector = DeviceTokenSelector(session.get_providers())
            except (ModelIntegrityError, ort.capi.onnxruntime_pybind11_state.Fail) as exc:  # serve without it
                log.warning("sampled tokens will be selected on the host: the device's selector did not load (%s)",
                            exc)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        session_settings: SessionSettings | None = None,
        max_samples: int = 64,
        single_row_dir: Path | None = None,
        device_selection: bool | None = None,
        device_selection_min_rows: int = DEVICE_SELECTION_MIN_ROWS,
        kv_cache: str = "auto",
        int8_greedy_head: bool = True,
    ) -> Engine:
        """Verify the manifest's sha256s, then open the decoder of the KV cache layout
        :func:`choose_kv_cache` picks (and the single-row decoder, which must be a build of the same
        source with the same architecture, that layout and the same tokenizer). ``int8_greedy_head``:
        greedy steps use the decoder's int8 head when it has one (the in-place graph)."""
        manifest = load_manifest(model_dir)
        settings = session_settings or SessionSettings()
        layout = choose_kv_cache(kv_cache, manifest, first_installed(settings), single_row_dir is not None)
        session = open_session(model_dir / manifest.decoder_for(layout), settings)
        single_row = None
        if single_row_dir is not None:
            other = load_manifest(single_row_dir)
            same = (other.source.get("sha256") == manifest.source.get("sha256")
                    and other.architecture == manifest.architecture
                    and layout in other.kv_caches
                    and other.files.get(other.tokenizer_file) == manifest.files.get(manifest.tokenizer_file))
            if not same:
                raise ModelIntegrityError(
                    f"{single_row_dir.name} cannot run {model_dir.name}'s single-row steps: it is not a build of "
                    "the same source with the same architecture, KV cache layout and tokenizer"
                )
            single_row = open_session(single_row_dir / other.decoder_for(layout), settings)
        return cls(model_dir, manifest, session, max_samples=max_samples, single_row_session=single_row,
                   device_selection=device_selection, device_selection_min_rows=device_selection_min_rows,
                   kv_cache=layout, int8_greedy_head=int8_greedy_head)

    # -- facts ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def providers(self) -> list[str]:
        """Execution providers actually in use, first one first."""
        return list(self._session.get_providers())

    @property
    def accelerated(self) -> bool:
        """Runs on an accelerator (not the CPU provider): the policies' CPU caps do not apply."""
        return self.providers[0] != CPU

    @property
    def int8_greedy_head(self) -> bool:
        """Whether greedy steps run the decoder's int8 head (the float32 head's argmax, fewer bytes read)."""
        return self._greedy_head

    @property
    def context_length(self) -> int:
        return self.manifest.context_length

    # -- high level ----------------------------------------------------------------------------
    def generate(
        self,
        prompt: Prompt,
        params: SamplingParams | None = None,
        n: int = 1,
        *,
        cancel: CancelToken | None = None,
        deadline: float | None = None,
        on_tokens: TokenCallback | None = None,
    ) -> list[Completion]:
        """``n`` completions of a prompt (text = one user turn, or chat messages), one prefill.

        ``deadline`` is an absolute ``time.monotonic()`` value. ``on_tokens`` is called after each
        decode step with the ``(completion index, token id)`` pairs that step accepted.
        """
        params = params or SamplingParams()
        self.check_request(params, n)
        ids = self.tokenizer.encode_prompt(prompt)
        if (stopped := self._interrupted(cancel, deadline, time.monotonic())) is not None:  # spare the prefill
            return [Completion(i, "", [], [], stopped, len(ids)) for i in range(n)]
        state = self.prefill(ids)
        if n > 1:
            state = state.fork(n)
        return self.decode(state, params, cancel=cancel, deadline=deadline, compact=True, on_tokens=on_tokens)

    def check_request(self, params: SamplingParams, n: int) -> None:
        """Validate sampling values and the sample count before any work is done."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.max_samples:
            raise InvalidArgumentError("n", f"must be an integer in [1, {self.max_samples}], got {n!r}")
        params.validate(max_new_tokens_limit=self.context_length)

    # -- state operations ----------------------------------------------------------------------
    def prefill(self, token_ids: Sequence[int]) -> SequenceState:
        """A one-row state holding ``token_ids`` in its cache, ready to decode."""
        ids = list(token_ids)
        if not ids:
            raise InvalidArgumentError("prompt", "prompt is empty")
        self._check_room(len(ids))
        arch = self.manifest.architecture
        empty = np.zeros((1, arch.num_kv_heads, 0, arch.head_dim), dtype=np.float32)
        state = SequenceState(
            kv=[ort.OrtValue.ortvalue_from_numpy(empty, self._device, 0) for _ in self._past_names],
            mask=np.zeros((1, 0), dtype=np.int64),
            lengths=np.zeros(1, dtype=np.int64),
            tokens=[[]],
            pending=[[]],
            host_logits=np.zeros((1, arch.vocab_size), dtype=np.float32),
            device=self._device,
            _keepalive=[empty],
        )
        if self._inplace:  # room for the prompt and a stretch of decoding
            shape = (1, arch.num_kv_heads, inplace_capacity(len(ids)), arch.head_dim)
            state._set_buffers([np.zeros(shape, dtype=np.float32) for _ in self._past_names])
        return self.extend(state, [ids])

    def extend(self, state: SequenceState, tokens: Sequence[Sequence[int]]) -> SequenceState:
        """Append given tokens to each row (ragged allowed) and run them through the model."""
        if len(tokens) != state.rows:
            raise InvalidArgumentError("tokens", f"need one token list per row ({state.rows}), got {len(tokens)}")
        for r, toks in enumerate(tokens):
            self._check_room(len(state.tokens[r]) + len(toks))
        feed = [state.pending[r] + list(toks) for r, toks in enumerate(tokens)]
        for r, toks in enumerate(tokens):
            state.tokens[r].extend(toks)
            state.pending[r] = []
        if any(feed):
            self._feed(state, feed)
        return state

    def decode(
        self,
        state: SequenceState,
        params: SamplingParams,
        *,
        cancel: CancelToken | None = None,
        deadline: float | None = None,
        compact: bool = False,
        on_tokens: TokenCallback | None = None,
    ) -> list[Completion]:
        """Sample each row of ``state`` until EOS, a stop string, ``max_new_tokens``, the context
        limit, cancellation or the deadline.

        Without ``compact`` the state is advanced in place and stays usable (tree search keeps
        it: a row's last token is left pending). With ``compact`` finished rows are dropped from
        the batch as it shrinks, which is faster, and the state must not be reused.
        """
        params.validate(max_new_tokens_limit=self.context_length)
        n_rows = state.rows
        rngs = row_generators(params.seed, n_rows)
        prompt_tokens = [len(t) for t in state.tokens]
        limit = [min(params.max_new_tokens, self.context_length - p) for p in prompt_tokens]
        generated: list[list[int]] = [[] for _ in range(n_rows)]
        logprobs: list[list[float]] = [[] for _ in range(n_rows)]
        finish: list[FinishReason | None] = [None] * n_rows
        cut: list[int | None] = [None] * n_rows

        greedy = params.greedy
        if any(state.pending):
            self._feed(state, [list(p) for p in state.pending], greedy)
            state.pending = [[] for _ in range(state.rows)]
        live = list(range(n_rows))  # live[i]: which completion state row i belongs to
        step_s = 0.0  # the last step's duration: a step that would end past the deadline is not started
        while True:
            began = time.monotonic()
            stopped = self._interrupted(cancel, deadline, began + step_s)
            active = [i for i in range(state.rows) if finish[live[i]] is None]
            if not active:
                break
            if stopped is not None:
                for i in active:
                    finish[live[i]] = stopped
                break
            picked, uniforms = None, None
            if self._selector is not None and not params.greedy and state.on_device(active):
                uniforms = np.array([rngs[live[i]].random() for i in active])  # as select_tokens draws them
                picked = self._selector.select(
                    state.device_logits, np.asarray(active), params, uniforms, self.manifest.architecture.vocab_size)
                if picked is not None:
                    with self._stats_lock:
                        self.stats.device_selections += 1
            if picked is None:  # on the host (with the device's draws, if it handed the step back)
                # a greedy step's greedy logits serve its pick as they are; reading ``logits`` makes float32 ones
                source = state.greedy.logits if greedy and state.greedy is not None else state.logits
                logits = source if len(active) == state.rows else source[active]
                picked = select_tokens(logits, params, [rngs[live[i]] for i in active], uniforms)
            chosen, chosen_lp = picked
            feed: list[list[int]] = [[] for _ in range(state.rows)]
            accepted: list[tuple[int, int]] = []
            for j, i in enumerate(active):
                c, tok = live[i], int(chosen[j])
                if tok in self._eos:
                    finish[c] = FinishReason.EOS
                    continue
                generated[c].append(tok)
                accepted.append((c, tok))
                logprobs[c].append(float(chosen_lp[j]))
                state.tokens[i].append(tok)
                if params.stop and (pos := self._find_stop(generated[c], params.stop)) is not None:
                    finish[c], cut[c] = FinishReason.STOP, pos
                elif len(generated[c]) >= limit[c]:
                    finish[c] = FinishReason.LENGTH
                if finish[c] is None:
                    feed[i] = [tok]
                else:
                    state.pending[i] = [tok]
            if on_tokens is not None and accepted:
                on_tokens(accepted)
            if not any(feed):
                break
            if compact:
                running = [i for i in range(state.rows) if feed[i]]
                if len(running) <= state.rows // 2:
                    state = state.select(running)
                    feed = [feed[i] for i in running]
                    live = [live[i] for i in running]
            self._feed(state, feed, greedy)
            with self._stats_lock:
                self.stats.decode_steps += 1
                self.stats.generated_tokens += sum(1 for f in feed if f)
            step_s = time.monotonic() - began

        out = []
        for c in range(n_rows):
            text = self.tokenizer.decode(generated[c])
            if cut[c] is not None:
                text = text[: cut[c]]
            out.append(
                Completion(
                    index=c,
                    text=text,
                    token_ids=generated[c],
                    logprobs=logprobs[c],
                    finish_reason=finish[c] or FinishReason.LENGTH,
                    prompt_tokens=prompt_tokens[c],
                )
            )
        return out

    # -- internals -----------------------------------------------------------------------------
    def _check_room(self, n_tokens: int) -> None:
        if n_tokens >= self.context_length:
            raise InvalidArgumentError(
                "prompt",
                f"prompt has {n_tokens} tokens; the model's context holds {self.context_length} "
                "with room for at least one new token",
            )

    def _find_stop(self, generated: list[int], stops: tuple[str, ...]) -> int | None:
        text = self.tokenizer.decode(generated)
        hits = [p for s in stops if (p := text.find(s)) >= 0]
        return min(hits) if hits else None

    @staticmethod
    def _interrupted(cancel: CancelToken | None, deadline: float | None, step_end: float) -> FinishReason | None:
        """Why not to start the next step: cancelled, or it would end (``step_end``) past the deadline."""
        if cancel is not None and cancel.cancelled:
            return FinishReason.CANCELLED
        if deadline is not None and step_end >= deadline:
            return FinishReason.DEADLINE
        return None

    def _feed(self, state: SequenceState, new: list[list[int]], greedy: bool = False) -> None:
        """Run one forward pass that appends ``new[r]`` to row ``r`` (padding the shorter rows).

        ``greedy``: the next tokens will be picked greedily, so a one-token step that feeds every
        row may run the decoder's int8 head and leave greedy logits (:mod:`router.engine.greedy_head`;
        anything that reads them as float32 logits later, such as a fork, runs the step again)."""
        width = max(len(toks) for toks in new)
        rows = state.rows
        if self._inplace and rows > 1 and width > 1:
            # GroupQueryAttention takes several new tokens at once for one row only: one slot per
            # pass instead, which lays the cache out as one wide pass would (padding after each
            # row's tokens). Only a caller's multi-token extend of a batch comes here.
            for j in range(width):
                self._feed(state, [toks[j : j + 1] for toks in new])
            return
        ids = np.zeros((rows, width), dtype=np.int64)
        new_mask = np.zeros((rows, width), dtype=np.int64)
        counts = np.array([len(toks) for toks in new], dtype=np.int64)
        for r, toks in enumerate(new):
            ids[r, : len(toks)] = toks
            new_mask[r, : len(toks)] = 1
        # Padding slots continue the count; they are masked, so their positions never matter.
        positions = state.lengths[:, None] + np.arange(width, dtype=np.int64)[None, :]
        mask = np.concatenate([state.mask, new_mask], axis=1)
        state.reserve(mask.shape[1])  # inplace layout: room for the new slots
        fed = np.flatnonzero(counts)
        if self._selector is not None and width == 1 and rows >= self._selector_min_rows:  # logits stay put
            logits_value, kv, _ = self._run(ids, mask, positions, state.kv, logits_on_device=True)
            state.keep_logits_on_device(logits_value, fed)
            self._advance(state, kv, mask, counts)
            return
        if greedy and self._greedy_head and width == 1 and fed.size == rows:
            logits, kv, recomputed = self._run(ids, mask, positions, state.kv, exact=False)
            past = state.kv
            state.keep_greedy_logits(GreedyLogits(
                logits[:, 0], lambda: self._run(ids, mask, positions, past)[0][:, 0].copy()))
            with self._stats_lock:
                self.stats.int8_head_steps += 1
                self.stats.int8_head_recomputed += recomputed
            self._advance(state, kv, mask, counts)
            return
        logits, kv, _ = self._run(ids, mask, positions, state.kv)
        # Decoders from router/modelbuild/graph.py return only each row's last position. When every
        # row was fed (every decode step but the last ones of a ragged batch) the fresh output
        # becomes the state's logits as it is: copying [64, 49152] floats took 2.8 ms.
        if logits.shape[1] == 1 and fed.size == rows:
            state.logits = logits[:, 0]
        else:
            state.logits[fed] = logits[fed, 0] if logits.shape[1] == 1 else logits[fed, counts[fed] - 1]
        self._advance(state, kv, mask, counts)

    def _advance(self, state: SequenceState, kv: list[ort.OrtValue], mask: np.ndarray, counts: np.ndarray) -> None:
        state.kv, state.mask = kv, mask
        state.lengths = state.lengths + counts
        state._keepalive = []
        with self._stats_lock:
            self.stats.forward_calls += 1

    def _run(
        self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, kv: list[ort.OrtValue],
        logits_on_device: bool = False, exact: bool = True,
    ) -> tuple[np.ndarray | ort.OrtValue, list[ort.OrtValue], int]:
        """One forward pass: the logits ([rows, width, vocab]; an ``OrtValue`` on the decoder's
        device with ``logits_on_device``, else a host array), the new cache, and the logits the
        int8 head recomputed in float32; with ``exact`` false (a decoder with the int8 head),
        greedy logits (:mod:`router.engine.greedy_head`)."""
        session = self._session
        if self._single_row is not None and ids.shape == (1, 1):
            session = self._single_row
            with self._stats_lock:
                self.stats.single_row_forwards += 1
        binding = session.io_binding()
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        binding.bind_cpu_input("position_ids", np.ascontiguousarray(positions))
        for name, value in zip(self._past_names, kv, strict=True):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", self._device if logits_on_device else "cpu")
        if self._inplace:  # present is past: the decoder writes the new slots into the same buffers
            for name, value in zip(self._present_names, kv, strict=True):
                binding.bind_ortvalue_output(name, value)
        else:
            for name in self._present_names:
                binding.bind_output(name, self._device)
        switch = self._head_switch and session is self._session
        if switch:  # the in-place graph's head: float32, or int8 for a greedy step
            binding.bind_cpu_input(EXACT_LOGITS, np.array(exact))
            binding.bind_output(HEAD_CANDIDATES, "cpu")
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = outputs[0] if logits_on_device else outputs[0].numpy()
        recomputed = int(outputs[-1].numpy()[0]) if switch else 0
        if self._inplace:
            return logits, kv, recomputed
        return logits, list(outputs[1 : 1 + len(self._present_names)]), recomputed
