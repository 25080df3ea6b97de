"""Sampling where the logits are: the engine's token-selection extension point for accelerators.

:class:`DeviceTokenSelector` runs the committed selection graphs (``artifacts/``, made by
``scripts/build_token_selector.py`` from :mod:`router.modelbuild.selector`) on the decoder's
execution provider, reading the logits the decoder left on the device. Only the chosen token ids
and their log-probabilities come back to the host. The host keeps what decides reproducibility:
one uniform draw per row per step from the same per-row generators as
:func:`router.engine.sampling.select_tokens`, so a seed means the same on both paths. The draw
itself is the same inverse CDF, summed in float64 as the host sums, so a token can differ only
where a uniform falls within rounding of the boundary between two tokens (no row did in the
tests or on the H200). A top-k or nucleus larger than the sorted pool hands the step back to the
host, which selects with the same draws.

Greedy steps stay on the host (one argmax per row is cheap there). The engine turns this on by
itself on CUDA for batches of at least ``DEVICE_SELECTION_MIN_ROWS`` rows; tests force it on the
CPU provider, where the same graphs run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from router.engine.manifest import sha256_file
from router.engine.types import SamplingParams
from router.errors import ModelIntegrityError
from router.modelbuild.selector import BLOCK, OUTPUTS, POOL

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CARD_FILE = "token_selector.json"
BUILD_COMMAND = "python scripts/build_token_selector.py"


def model_file(kind: str) -> str:
    """File name of the ``kind`` selector (``full`` or ``truncated``)."""
    return f"token_selector_{kind}.onnx"


class DeviceTokenSelector:
    """Picks one token per row from logits that stay on the device (an ``OrtValue``)."""

    def __init__(self, providers: list[str], artifacts: Path = ARTIFACTS) -> None:
        card_path = artifacts / CARD_FILE
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
            expected = dict(card["sha256"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelIntegrityError(f"token selector card {card_path} is unreadable ({exc}); run {BUILD_COMMAND}") \
                from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # One thread that never spins: the few nodes left to the CPU (shapes) are tiny, and a pool
        # spinning after each run took cores from the decoder's own pool (2x slower steps here).
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sessions: dict[str, ort.InferenceSession] = {}
        for kind in ("full", "truncated"):
            path = artifacts / model_file(kind)
            if not path.is_file() or sha256_file(path) != expected.get(path.name):
                raise ModelIntegrityError(f"token selector {path} is missing or does not match {CARD_FILE}; "
                                          f"run {BUILD_COMMAND}")
            self._sessions[kind] = ort.InferenceSession(str(path), options, providers=providers)
        self.providers = self._sessions["full"].get_providers()
        self._ranks = np.arange(POOL, dtype=np.float64)

    def inputs(
        self, rows: np.ndarray, params: SamplingParams, uniforms: np.ndarray, vocab: int
    ) -> tuple[str, dict[str, np.ndarray]] | None:
        """The graph (``full`` or ``truncated``) and its host inputs besides ``logits`` for one step;
        None when a top-k is larger than the sorted pool (the host selects)."""
        k = params.top_k if 0 < params.top_k < vocab else vocab
        truncated = k < vocab or params.top_p < 1.0
        pool = min(vocab, POOL)
        if truncated and pool < k < vocab:
            return None
        if truncated:
            shape_info = [pool, 0, 0, 0]
            limits = [1.0 if k < vocab else 0.0, 1.0 if k <= pool or pool == vocab else 0.0]
        else:
            blocks = -(-vocab // BLOCK)
            shape_info = [len(rows), blocks, BLOCK, blocks * BLOCK - vocab]
            limits = [blocks - 1.0, vocab - 1.0]
        return ("truncated" if truncated else "full"), {
            "rows": np.ascontiguousarray(rows, dtype=np.int64),
            "uniforms": np.ascontiguousarray(uniforms, dtype=np.float64),
            # Both forms, as the host's two paths scale: the full one multiplies, the truncated one divides.
            "temperature": np.array([params.temperature], dtype=np.float32),
            "inv_temperature": np.array([1.0 / params.temperature], dtype=np.float32),
            "top_k": np.array([k], np.float64),
            "top_p": np.array([params.top_p if params.top_p < 1.0 else 2.0], np.float64),
            "shape_info": np.array(shape_info, dtype=np.int64),
            "limits": np.array(limits, dtype=np.float64),
            "ranks": self._ranks[:pool] if truncated else self._ranks[:1],
        }

    def session(self, kind: str) -> ort.InferenceSession:
        """The ``kind`` graph's session (``full`` or ``truncated``)."""
        return self._sessions[kind]

    def select(
        self, logits: ort.OrtValue, rows: np.ndarray, params: SamplingParams, uniforms: np.ndarray, vocab: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Tokens and log-probabilities for ``rows`` of ``logits`` ([rows, width, vocab], last
        position used), one ``uniforms`` draw per row; ``params`` must not be greedy. None when a
        row's support is larger than the sorted pool (a top-k above :data:`POOL`, or a nucleus
        that does not end inside it): the caller selects on the host, with the same uniforms."""
        step = self.inputs(rows, params, uniforms, vocab)
        if step is None:
            return None
        kind, host_inputs = step
        session = self._sessions[kind]
        binding = session.io_binding()
        binding.bind_ortvalue_input("logits", logits)
        for name, value in host_inputs.items():
            binding.bind_cpu_input(name, value)
        for name in OUTPUTS:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        tokens, logprobs, covered = (v.numpy() for v in binding.get_outputs())
        if not covered.all():
            return None
        return tokens, logprobs.astype(np.float64)
