"""The GGUF's own Q4_1 blocks, read so the decoder can keep them 4-bit without changing a value.

Why: batch-1 decode is memory-bound, and the fp32 decoder reads 538 MB of weights per token. The
GGUF stores every projection as Q4_1 blocks of 32 (``w = d * q + m``: 4-bit ``q``, fp16 ``d`` and
``m``), so those weights are exactly representable in 4 bits plus per-block constants.
Re-quantizing the fp32 weights (int8, 4-bit with integer zero points) changed the model's output
here; keeping the GGUF's blocks does not, because the fp32 model *is* their dequantization.

``MatMulNBits`` computes ``A @ (d * (q - zp))`` with an integer zero point, which cannot hold an
arbitrary fp16 ``m`` (float zero points run on a slow path: 16x slower than fp32 in a
microbenchmark here). So the graph writer emits each projection as

    Y = MatMulNBits(A; q, d, zp=0) + BlockSums(A) @ M        (M[b, n] = m of row n's block b)

the same sum regrouped: ``sum_k A_k (d q_k + m) = sum_k A_k d q_k + m sum_k A_k``. The block sums
are shared by the projections that read the same input. The token embedding (Q8_0 in the GGUF,
tied to the LM head) stays fp32. The writer checks every block set against the fp32 weight it
replaces, bit for bit, before using it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 32
Q4_1_BYTES = 20  # fp16 d, fp16 m, 16 bytes of nibbles
# GGUF tensor -> transformers projection, per layer
_GGUF_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


@dataclass(frozen=True)
class Q4Blocks:
    """One Q4_1 matrix ``[rows, cols]`` (transformers' ``[out, in]``):
    ``w[r, b*32 + j] = d[r, b] * q[r, b, j] + m[r, b]``."""

    q: np.ndarray  # [rows, blocks, 32] uint8 in 0..15
    d: np.ndarray  # [rows, blocks] float32
    m: np.ndarray  # [rows, blocks] float32

    @classmethod
    def from_gguf(cls, raw: np.ndarray) -> Q4Blocks:
        rows = raw.shape[0]
        blocks = raw.reshape(rows, -1, Q4_1_BYTES)
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        nibbles = blocks[..., 4:]
        q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1)  # ggml: low nibbles first
        return cls(q=q, d=d, m=m)

    @staticmethod
    def stack(parts: list[Q4Blocks]) -> Q4Blocks:
        """Row-wise concatenation (the packed q|k|v and gate|up projections)."""
        return Q4Blocks(q=np.concatenate([p.q for p in parts]), d=np.concatenate([p.d for p in parts]),
                        m=np.concatenate([p.m for p in parts]))

    def rows_in(self, order: np.ndarray) -> Q4Blocks:
        return Q4Blocks(q=self.q[order], d=self.d[order], m=self.m[order])

    def dequantize(self) -> np.ndarray:
        rows = self.q.shape[0]
        return (self.d[..., None] * self.q.astype(np.float32) + self.m[..., None]).reshape(rows, -1)

    def packed(self) -> np.ndarray:
        """``MatMulNBits``'s ``B`` input: ``[rows, blocks, 16]`` bytes, element 0 in the low nibble."""
        return (self.q[..., 0::2] | (self.q[..., 1::2] << 4)).astype(np.uint8)


def _hf_row_order(rows: int, n_head: int) -> np.ndarray:
    """The row order transformers gives q/k weights when it loads a llama GGUF (it undoes the
    GGUF's rotary permutation)."""
    dim = rows // n_head // 2
    return np.arange(rows).reshape(n_head, dim, 2).swapaxes(2, 1).reshape(rows)


def read_q4_projections(gguf_path: Path, num_heads: int, num_kv_heads: int) -> dict[str, Q4Blocks]:
    """Every Q4_1 projection of the GGUF under its transformers name
    (``model.layers.{i}.self_attn.q_proj.weight`` ...), rows in transformers' order."""
    from gguf import GGMLQuantizationType, GGUFReader

    out = {}
    for tensor in GGUFReader(str(gguf_path)).tensors:
        if tensor.tensor_type != GGMLQuantizationType.Q4_1:
            continue
        parts = tensor.name.split(".")  # blk.{i}.{kind}.weight
        if len(parts) != 4 or parts[0] != "blk" or parts[2] not in _GGUF_NAMES:
            continue
        blocks = Q4Blocks.from_gguf(np.asarray(tensor.data))
        if parts[2] == "attn_q":
            blocks = blocks.rows_in(_hf_row_order(blocks.q.shape[0], num_heads))
        elif parts[2] == "attn_k":
            blocks = blocks.rows_in(_hf_row_order(blocks.q.shape[0], num_kv_heads))
        out[f"model.layers.{parts[1]}.{_GGUF_NAMES[parts[2]]}.weight"] = blocks
    return out
