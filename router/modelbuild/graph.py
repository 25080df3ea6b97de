"""Write a Llama decoder straight to ONNX from its weights, with ONNX Runtime's fused operators.

Why not ``torch.onnx.export(dynamo=True)`` (used up to builder version 1): the traced graph
spells every layer out in ~60 small operators (RMSNorm as Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul,
rotary as Slice/Neg/Concat, the repeat of the KV heads as Expand/Reshape, ...). Each of its ~1,900
nodes per step costs microseconds of dispatch next to tensors of a few hundred floats, and the
ORT profile put ~45 % of a batch-1 decode step's kernel time outside MatMul; onnxscript's
``optimize_for_ort`` fusions only took it to ~1,600 nodes. Here each layer is 13 nodes:

    SkipSimplifiedLayerNormalization -> MatMul(q|k|v packed) -> Split -> RotaryEmbedding x2
    -> Attention (ONNX opset 23: grouped-query heads, past/present cache, additive mask)
    -> MatMul(o) -> SkipSimplifiedLayerNormalization -> MatMul(gate|up packed) -> Split
    -> QuickGelu(alpha=1) (= SiLU) -> Mul -> MatMul(down)

The in-place KV cache graph has 10: ``GroupQueryAttention`` takes the packed q|k|v and applies
the rotary embedding itself (``do_rotary`` with the same cos/sin tables and ``position_ids``), so
the q|k|v Split and both RotaryEmbedding nodes go: 90 fewer nodes, the same tokens, about 1-2 %
faster in pairs that alternate load order (README, "The in-place KV cache").

The in-place graph's LM head also has an int8 copy behind an ``If`` on an ``exact_logits`` input,
for greedy steps (``_int8_head``; ``router/engine/greedy_head.py``).

The interface is the optimum layout the engine already runs (``input_ids, attention_mask,
position_ids, past_key_values.{i}.key/value`` -> ``logits, present.{i}.key/value``, caches
``[batch, kv_heads, seq, head_dim]``) with one difference: ``logits`` is ``[batch, 1, vocab]``,
the next-token logits after each row's last new token, since nothing else is ever sampled from
(new tokens are padded at the end, so a row's last one is its count of unmasked new slots minus
one). The semantics are the same otherwise: ``attention_mask`` covers past + new slots and may mask
slots anywhere in the past (ragged rows after a fork), positions come from ``position_ids``.
The mask becomes one additive bias ``[batch, 1, new, past + new]`` (masked slot or future slot ->
the float minimum) shared by every layer.

Only the plain Llama recipe is written (RMSNorm, SiLU MLP, default RoPE, no biases); anything
else is refused with a clear error rather than built subtly wrong. Parity with transformers is
checked at build time (``router/modelbuild/build.py``) and in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from router.engine.greedy_head import EXACT_LOGITS, HEAD_CANDIDATES
from router.engine.manifest import KV_CACHES
from router.errors import BuildError
from router.modelbuild.q4 import BLOCK as Q4_BLOCK
from router.modelbuild.q4 import Q4Blocks

OPSET = 23  # Attention, with grouped-query heads and a KV cache, is an ONNX operator from 23 on
MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class LlamaShape:
    """What the graph needs to know about the architecture."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    max_positions: int

    @classmethod
    def from_config(cls, cfg: Any) -> LlamaShape:
        """From a transformers ``LlamaConfig``; refuses what this writer does not implement."""
        if getattr(cfg, "model_type", "llama") != "llama":
            raise BuildError(f"the fused graph writer implements Llama only, not {cfg.model_type!r}")
        rope = dict(getattr(cfg, "rope_parameters", None) or {})
        legacy = getattr(cfg, "rope_scaling", None) or {}
        rope_type = rope.get("rope_type") or legacy.get("rope_type") or legacy.get("type") or "default"
        if rope_type != "default":
            raise BuildError(f"RoPE scaling {rope_type!r} is not implemented by the fused graph writer")
        if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
            raise BuildError("attention or MLP biases are not implemented by the fused graph writer")
        if getattr(cfg, "hidden_act", "silu") != "silu":
            raise BuildError(f"activation {cfg.hidden_act!r} is not implemented by the fused graph writer")
        theta = rope.get("rope_theta", getattr(cfg, "rope_theta", None))
        if theta is None:
            raise BuildError("the config has no rope_theta")
        return cls(
            num_layers=cfg.num_hidden_layers,
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_heads=cfg.num_attention_heads,
            num_kv_heads=getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            vocab_size=cfg.vocab_size,
            rms_norm_eps=float(cfg.rms_norm_eps),
            rope_theta=float(theta),
            max_positions=int(cfg.max_position_embeddings),
        )


def rope_caches(shape: LlamaShape) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin ``[max_positions, head_dim / 2]`` of the default (non-interleaved) Llama RoPE.

    Computed as transformers does (float32 inverse frequencies, float32 outer product) so the
    angles round the same way.
    """
    import torch  # the same arithmetic as transformers' LlamaRotaryEmbedding

    exponents = torch.arange(0, shape.head_dim, 2, dtype=torch.int64).float() / shape.head_dim
    inv_freq = 1.0 / (shape.rope_theta**exponents)
    angles = torch.outer(torch.arange(shape.max_positions, dtype=torch.int64).float(), inv_freq)
    return angles.cos().numpy().astype(np.float32), angles.sin().numpy().astype(np.float32)


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, domain: str = "", name: str = "",
           outputs: list[str] | None = None, **attrs: Any) -> list[str]:
        self._n += 1
        node_name = name or f"{op_type}_{self._n}"
        outs = outputs or [f"{node_name}/out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, domain=domain or None, **attrs))
        return outs


INT8_HEAD_BLOCK = 32  # the int8 head's block: 576 = 18 blocks (32 erred ~2x less than 64 here)
INT8_HEAD_KEEP = 10.0  # greedy steps recompute every token within this many logits of the int8 top

# The file of each layout's graph in a model directory; a build with several shares WEIGHTS_FILE.
DECODER_FILES = {"concat": "model.onnx", "inplace": "model-inplace.onnx"}
WEIGHTS_FILE = "model.weights"
_EXTERNAL_MIN_BYTES = 1024  # smaller initializers (shapes, axes, scalars) stay inside each graph
_WEIGHTS_ALIGN = 4096  # page-aligned offsets, so ONNX Runtime may map them instead of copying


def build_llama_graph(
    state: Mapping[str, np.ndarray], shape: LlamaShape, q4: Mapping[str, Q4Blocks] | None = None,
    kv_cache: str = "concat",
) -> onnx.ModelProto:
    """The decoder as an ONNX model. ``state`` holds the transformers parameter names as float32
    arrays (``model.layers.{i}.self_attn.q_proj.weight`` ..., ``lm_head.weight`` optional when
    tied). With ``q4`` (the GGUF's Q4_1 blocks by the same names, ``router/modelbuild/q4.py``),
    every projection whose parts all have blocks is kept 4-bit; the blocks must dequantize to
    ``state``'s weights bit for bit.

    ``kv_cache``: ``"concat"`` (ONNX ``Attention``: ``present`` is a new tensor one step longer
    than ``past``; any provider) or ``"inplace"`` (``com.microsoft.GroupQueryAttention``: past and
    present are one fixed-capacity buffer ``[batch, kv_heads, capacity, head_dim]`` that the caller
    binds as both, and a step writes only its new slots, copying nothing; ``attention_mask`` still
    covers the slots in use, ``total <= capacity``, each row's new tokens in the last slots; it also
    rotates q and k from ``position_ids``, so ragged rows keep their own positions. ONNX Runtime
    runs that operator in float32 on the CPU provider only: bench/results/attention.md).
    """
    if kv_cache not in KV_CACHES:
        raise BuildError(f"kv_cache must be one of {KV_CACHES}, got {kv_cache!r}")
    g = _Graph()
    s = shape
    f32 = np.float32
    block_sums: dict[str, str] = {}  # projection input -> its per-block sums, shared

    def w(name: str) -> np.ndarray:
        if name not in state:
            raise BuildError(f"weight {name!r} is missing from the checkpoint")
        return np.asarray(state[name], dtype=f32)

    def project(x: str, parts: list[str], tag: str) -> str:
        """``x @ concat(parts).T``: a MatMul, or the exact 4-bit form when every part has blocks."""
        weight = np.concatenate([w(n) for n in parts], axis=0)  # [out, in]
        if q4 is None or not all(n in q4 for n in parts):
            return g.op("MatMul", [x, g.const(tag, np.ascontiguousarray(weight.T))], name=tag)[0]
        blocks = Q4Blocks.stack([q4[n] for n in parts])
        if not np.array_equal(blocks.dequantize(), weight):
            raise BuildError(f"the GGUF's Q4_1 blocks of {parts} do not dequantize to the checkpoint's weights")
        rows, n_blocks, _ = blocks.q.shape
        if x not in block_sums:
            grouped = g.op("Reshape", [x, g.const(f"{tag}.block_shape", np.array([0, 0, -1, Q4_BLOCK], np.int64))])[0]
            block_sums[x] = g.op("ReduceSum", [grouped, g.const(f"{tag}.block_axis", np.array([3], np.int64))],
                                 keepdims=0, name=f"{tag}.block_sums")[0]
        nbits_inputs = [x, g.const(f"{tag}.q4", blocks.packed()), g.const(f"{tag}.scale", blocks.d.reshape(-1)),
                        g.const(f"{tag}.zero_point", np.zeros(rows * ((n_blocks + 1) // 2), np.uint8))]
        # accuracy_level 1: float32 arithmetic (4 would quantize the activations to int8)
        scaled = g.op("MatMulNBits", nbits_inputs, domain=MS_DOMAIN, K=n_blocks * Q4_BLOCK, N=rows, bits=4,
                      block_size=Q4_BLOCK, accuracy_level=1, name=f"{tag}.q4")[0]
        offset = g.op("MatMul", [block_sums[x], g.const(f"{tag}.block_min", np.ascontiguousarray(blocks.m.T))],
                      name=f"{tag}.offset")[0]
        return g.op("Add", [scaled, offset], name=tag)[0]

    embed = w("model.embed_tokens.weight")
    lm_head = np.asarray(state["lm_head.weight"], dtype=f32) if "lm_head.weight" in state else embed
    g.const("embed_tokens", embed)
    cos, sin = rope_caches(s)
    g.const("rope_cos", cos)
    g.const("rope_sin", sin)

    # -- additive attention bias, shared by every layer ------------------------------------------
    # allowed[b, i, j] = mask[b, j] and j <= past + i   (past = total - new)
    new_len = g.op("Shape", ["input_ids"], start=1, end=2)[0]  # [1]
    total_len = g.op("Shape", ["attention_mask"], start=1, end=2)[0]  # [1]
    past_len = g.op("Sub", [total_len, new_len])[0]
    zero = g.const("zero_i64", np.array(0, dtype=np.int64))
    one = g.const("one_i64", np.array(1, dtype=np.int64))
    new_scalar = g.op("Squeeze", [new_len])[0]
    total_scalar = g.op("Squeeze", [total_len])[0]
    q_pos = g.op("Add", [g.op("Range", [zero, new_scalar, one])[0], g.op("Squeeze", [past_len])[0]])[0]  # [new]
    k_pos = g.op("Range", [zero, total_scalar, one])[0]  # [total]
    causal = g.op("LessOrEqual", [g.op("Unsqueeze", [k_pos, g.const("axis0", np.array([0], np.int64))])[0],
                                  g.op("Unsqueeze", [q_pos, g.const("axis1", np.array([1], np.int64))])[0]])[0]
    slots = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const("axes12", np.array([1, 2], np.int64))])[0]],
                 to=TensorProto.BOOL)[0]  # [B, 1, 1, total]
    allowed = g.op("And", [causal, slots])[0]  # [B, 1, new, total]
    bias = g.op("Where", [allowed, g.const("bias_open", np.array(0.0, f32)),
                          g.const("bias_closed", np.array(np.finfo(f32).min, f32))])[0]
    if kv_cache == "inplace":  # GroupQueryAttention's view of the same layout: every row uses `total` slots
        total_i32 = g.op("Cast", [total_scalar], to=TensorProto.INT32)[0]
        batch = g.op("Shape", ["input_ids"], start=0, end=1)[0]
        last_slot = g.op("Sub", [total_i32, g.const("one_i32", np.array(1, dtype=np.int32))])[0]
        seqlens_k = g.op("Expand", [last_slot, batch])[0]  # [B] int32: each row's last slot in use

    # -- layers -----------------------------------------------------------------------------------
    hidden = g.op("Gather", ["embed_tokens", "input_ids"])[0]
    residual: str | None = None
    pending: str = hidden  # what the next norm adds to the residual stream
    q_size, kv_size = s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim
    eps = s.rms_norm_eps

    def norm(x: str, resid: str | None, weight: str, tag: str) -> tuple[str, str]:
        """RMSNorm of (x + resid); returns (normed, new residual)."""
        if resid is None:
            return g.op("SimplifiedLayerNormalization", [x, weight], axis=-1, epsilon=eps, name=tag)[0], x
        normed, _, _, summed = g.op("SkipSimplifiedLayerNormalization", [x, resid, weight], n_out=4,
                                    domain=MS_DOMAIN, epsilon=eps, name=tag)
        return normed, summed

    for i in range(s.num_layers):
        p = f"model.layers.{i}"
        in_norm = g.const(f"{p}.in_norm", w(f"{p}.input_layernorm.weight"))
        h, residual = norm(pending, residual, in_norm, f"l{i}.in_norm")
        qkv = project(h, [f"{p}.self_attn.{n}_proj.weight" for n in ("q", "k", "v")], f"{p}.qkv")
        past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        attn_out = [f"l{i}.attn", f"present.{i}.key", f"present.{i}.value"]
        if kv_cache == "inplace":
            attn = g.op("GroupQueryAttention", [qkv, "", "", past_k, past_v, seqlens_k, total_i32, "rope_cos",
                                                "rope_sin", "position_ids", bias],
                        outputs=attn_out, domain=MS_DOMAIN, num_heads=s.num_heads, kv_num_heads=s.num_kv_heads,
                        do_rotary=1, rotary_interleaved=0,
                        scale=float(s.head_dim) ** -0.5, name=f"l{i}.attention")[0]
        else:
            q, k, v = g.op("Split", [qkv, g.const(f"{p}.qkv_split", np.array([q_size, kv_size, kv_size], np.int64))],
                           n_out=3, axis=-1, name=f"l{i}.qkv_split")
            q = g.op("RotaryEmbedding", [q, "rope_cos", "rope_sin", "position_ids"], num_heads=s.num_heads,
                     interleaved=0, name=f"l{i}.rope_q")[0]
            k = g.op("RotaryEmbedding", [k, "rope_cos", "rope_sin", "position_ids"], num_heads=s.num_kv_heads,
                     interleaved=0, name=f"l{i}.rope_k")[0]
            attn = g.op("Attention", [q, k, v, bias, past_k, past_v], outputs=attn_out,
                        q_num_heads=s.num_heads, kv_num_heads=s.num_kv_heads, scale=float(s.head_dim) ** -0.5,
                        name=f"l{i}.attention")[0]
        o = project(attn, [f"{p}.self_attn.o_proj.weight"], f"{p}.o")
        h, residual = norm(o, residual, g.const(f"{p}.post_norm", w(f"{p}.post_attention_layernorm.weight")),
                           f"l{i}.post_norm")
        gate_up = project(h, [f"{p}.mlp.gate_proj.weight", f"{p}.mlp.up_proj.weight"], f"{p}.gate_up")
        gate, up = g.op("Split", [gate_up, g.const(f"{p}.mlp_split", np.array([s.intermediate_size] * 2, np.int64))],
                        n_out=2, axis=-1, name=f"l{i}.mlp_split")
        act = g.op("QuickGelu", [gate], domain=MS_DOMAIN, alpha=1.0, name=f"l{i}.silu")[0]  # x * sigmoid(x)
        prod = g.op("Mul", [act, up], name=f"l{i}.gated")[0]
        pending = project(prod, [f"{p}.mlp.down_proj.weight"], f"{p}.down")

    # Only each row's last new token needs logits (the next-token distribution): gather it before
    # the head, so a prefill of n tokens runs the 49k-wide head once, not n times. A row's last new
    # token is its count of unmasked new slots minus one (the engine pads new tokens at the end).
    new_slots = g.op("Slice", ["attention_mask", past_len, total_len, g.const("axis1_1d", np.array([1], np.int64))])[0]
    last = g.op("Max", [g.op("Sub", [g.op("ReduceSum", [new_slots, g.const("sum_axis", np.array([1], np.int64))],
                                          keepdims=1)[0], one])[0], zero])[0]  # [B, 1]
    index = g.op("Expand", [g.op("Unsqueeze", [last, g.const("axis2", np.array([2], np.int64))])[0],
                            g.const("gather_shape", np.array([1, 1, s.hidden_size], np.int64))])[0]  # [B, 1, H]
    pending = g.op("GatherElements", [pending, index], axis=1, name="last_hidden")[0]
    residual = g.op("GatherElements", [residual, index], axis=1, name="last_residual")[0]
    final, _ = norm(pending, residual, g.const("final_norm", w("model.norm.weight")), "final_norm")
    # A tied head is stored a second time, transposed: FusedMatMul(transB) on the embedding table
    # saved the 113 MB but made a batch-1 step 15% slower here.
    head = g.const("lm_head", np.ascontiguousarray(lm_head.T))
    greedy_head = kv_cache == "inplace" and q4 is None
    if greedy_head:
        tied = lm_head is embed or np.array_equal(lm_head, embed)  # a tied model's state_dict has both names
        _int8_head(g, final, head, lm_head, tied)
    else:
        g.op("MatMul", [final, head], outputs=["logits"], name="lm_head")

    b, snew, total, past = "batch", "sequence", "total_sequence", "past_sequence"
    past_slots, present_slots = ("capacity", "capacity") if kv_cache == "inplace" else (past, total)
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [b, snew]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [b, total]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, [b, snew]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [b, 1, s.vocab_size])]
    if greedy_head:
        inputs.append(helper.make_tensor_value_info(EXACT_LOGITS, TensorProto.BOOL, []))
        outputs.append(helper.make_tensor_value_info(HEAD_CANDIDATES, TensorProto.INT64, [1]))
    for i in range(s.num_layers):
        for kv in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kv}", TensorProto.FLOAT,
                                                        [b, s.num_kv_heads, past_slots, s.head_dim]))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kv}", TensorProto.FLOAT,
                                                         [b, s.num_kv_heads, present_slots, s.head_dim]))
    graph = helper.make_graph(g.nodes, "llama_decoder", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
                              producer_name="router.modelbuild.graph")
    model.ir_version = 10
    return model


def _int8_head(g: _Graph, final: str, head: str, weight: np.ndarray, tied: bool) -> None:
    """The LM head behind an ``If`` on the ``exact_logits`` input: the float32 ``MatMul``, or greedy
    logits from an int8 copy of it that reads a quarter of the bytes.

    Why: a batch-1 decode step reads every weight once, and the head is 113 of SmolLM2's 538 MB,
    while a greedy step needs only the argmax (and the chosen token's log-probability).

    The greedy branch: int8 logits (``MatMulNBits``, 8 bits, blocks of ``INT8_HEAD_BLOCK``,
    accuracy level 4, so the activations are int8 too), a bound on each one's error, and the
    tokens whose interval ``logit ± bound`` reaches the highest lower end: the float32 head's top
    token is always among them. Those, and every token within ``INT8_HEAD_KEEP`` of the int8 top
    (they carry most of the probability), are recomputed in float32 from the model's own rows and
    written over the int8 values. So the argmax of ``logits`` is the float32 head's (up to float32
    summation order), and the log-softmax at it differs from the float32 head's only through the
    int8 values of unlikely tokens (README, "Greedy steps on an int8 head", has the figures).
    ``head_candidates`` says how many logits were recomputed.

    The bound, per logit ``v``, summed over the blocks ``j`` of the hidden state ``a``: the int8
    activations move each value by at most ``c_j = max|a_j| / 254`` (symmetric int8, or uint8 with
    a zero point: either way), each weight by at most half its block's scale ``s_vj / 2``, so
    ``|exact - int8| <= sum_j c_j·|w_vj|_1 + (|a_j|_1 + B·c_j)·s_vj / 2 <= sum_j c_j·|w_vj|_1 +
    h_v·sum_j (|a_j|_1 + B·c_j)`` (``B`` values a block, ``h_v = max_j s_vj / 2``): one small MatMul
    against a ``[blocks, vocab]`` table plus a multiple of ``h``, scaled by 1.01, plus 1e-3 of slack
    for float32 rounding.
    """
    vocab, k = weight.shape
    block = INT8_HEAD_BLOCK
    pad = -k % block
    blocks = np.pad(weight, ((0, 0), (0, pad))).reshape(vocab, -1, block)
    n_blocks = blocks.shape[1]
    peak = np.abs(blocks).max(axis=2)
    scale = np.where(peak > 0, peak / 127, 1.0).astype(np.float32)  # a zero block stays zero with any scale
    q = np.clip(np.rint(blocks / scale[..., None]), -127, 127).astype(np.int16) + 128  # zero point 128
    bound_table = 1.01 * np.abs(blocks).sum(axis=2, dtype=np.float64).T  # [blocks, vocab]
    half_step = 1.01 * scale.max(axis=1).astype(np.float64) / 2  # [vocab]
    f32, i64 = np.float32, np.int64
    then_branch = helper.make_graph(
        [helper.make_node("MatMul", [final, head], ["exact_logits_out"], name="lm_head"),
         helper.make_node("Constant", [], ["no_candidates"], value=numpy_helper.from_array(np.zeros(1, i64)))],
        "exact_head", [], [helper.make_tensor_value_info("exact_logits_out", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("no_candidates", TensorProto.INT64, None)])
    c = {name: g.const(f"head_{name}", value) for name, value in {
        "int8": q.astype(np.uint8), "int8_scale": scale.reshape(-1), "bound_table": bound_table.astype(f32),
        "half_step": half_step.astype(f32),
        "pad": np.array([0, 0, 0, 0, 0, pad], i64), "blocks": np.array([0, 0, n_blocks, block], i64),
        "rows": np.array([-1, k], i64), "last": np.array([-1], i64), "step": np.array(1 / 254, f32),
        "block_len": np.array(block, f32), "slack": np.array(1e-3, f32), "keep": np.array(INT8_HEAD_KEEP, f32),
        "batch_dim": np.array([0], i64), "vocab_dim": np.array([2], i64),
    }.items()}

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [out], name=f"head.{out}", **attrs)

    rows_table = "embed_tokens" if tied else head  # [vocab, k], or [k, vocab] untied
    nodes = [
        helper.make_node("MatMulNBits", [final, c["int8"], c["int8_scale"]], ["int8_logits"], domain=MS_DOMAIN,
                         name="head.int8", K=k, N=vocab, bits=8, block_size=block, accuracy_level=4),
        node("Abs", [final], "abs"),
        node("Pad", ["abs", c["pad"]], "abs_padded"),
        node("Reshape", ["abs_padded", c["blocks"]], "abs_blocks"),  # [b, 1, blocks, block]
        node("ReduceMax", ["abs_blocks", c["last"]], "block_max", keepdims=0),
        node("Mul", ["block_max", c["step"]], "act_err"),  # c_j
        node("ReduceSum", ["abs_blocks", c["last"]], "block_l1", keepdims=0),
        node("Mul", ["act_err", c["block_len"]], "rounding_l1"),
        node("Add", ["block_l1", "rounding_l1"], "act_l1"),  # |a_j|_1 + B·c_j
        node("ReduceSum", ["act_l1", c["last"]], "act_l1_sum", keepdims=1),
        node("MatMul", ["act_err", c["bound_table"]], "weight_bound"),
        node("Mul", ["act_l1_sum", c["half_step"]], "rounding_bound"),
        node("Add", ["weight_bound", "rounding_bound"], "bound_raw"),
        node("Add", ["bound_raw", c["slack"]], "bound"),
        node("Sub", ["int8_logits", "bound"], "lower"),
        node("ReduceMax", ["lower", c["last"]], "floor", keepdims=1),
        node("Add", ["int8_logits", "bound"], "upper"),
        node("GreaterOrEqual", ["upper", "floor"], "can_win"),
        node("ReduceMax", ["int8_logits", c["last"]], "int8_top", keepdims=1),
        node("Sub", ["int8_top", c["keep"]], "likely_floor"),
        node("GreaterOrEqual", ["int8_logits", "likely_floor"], "likely"),
        node("Or", ["can_win", "likely"], "recompute"),
        node("NonZero", ["recompute"], "where"),  # [3, n]: batch, 0, vocab
        node("Gather", ["where", c["batch_dim"]], "where_batch", axis=0),
        node("Gather", ["where", c["vocab_dim"]], "where_vocab", axis=0),
        node("Squeeze", ["where_batch", c["batch_dim"]], "cand_batch"),
        node("Squeeze", ["where_vocab", c["batch_dim"]], "cand_vocab"),
        node("Reshape", [final, c["rows"]], "hidden_rows"),
        node("Gather", ["hidden_rows", "cand_batch"], "cand_hidden", axis=0),  # [n, k]
    ]
    if tied:
        nodes.append(node("Gather", [rows_table, "cand_vocab"], "cand_weight", axis=0))
    else:
        nodes += [node("Gather", [rows_table, "cand_vocab"], "cand_weight_t", axis=1),
                  node("Transpose", ["cand_weight_t"], "cand_weight", perm=[1, 0])]
    nodes += [
        node("Mul", ["cand_hidden", "cand_weight"], "cand_products"),
        node("ReduceSum", ["cand_products", c["last"]], "cand_logits", keepdims=0),
        node("Transpose", ["where"], "where_t", perm=[1, 0]),
        node("ScatterND", ["int8_logits", "where_t", "cand_logits"], "greedy_logits"),
        node("Shape", ["cand_logits"], "candidates"),
    ]
    else_branch = helper.make_graph(nodes, "int8_head", [], [
        helper.make_tensor_value_info("greedy_logits", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("candidates", TensorProto.INT64, None)])
    g.op("If", [EXACT_LOGITS], outputs=["logits", HEAD_CANDIDATES], name="head", then_branch=then_branch,
         else_branch=else_branch)


def write_llama_decoder(
    model: Any, out_path: Path, q4: Mapping[str, Q4Blocks] | None = None, kv_cache: str = "concat"
) -> Path:
    """Write a transformers Llama causal LM (eval mode, float32) to ``out_path`` as one ONNX file
    (with ``q4``: its Q4_1 projections kept 4-bit; ``kv_cache``: see :func:`build_llama_graph`)."""
    shape = LlamaShape.from_config(model.config)
    state = {k: v.detach().to("cpu").float().numpy() for k, v in model.state_dict().items()}
    proto = build_llama_graph(state, shape, q4, kv_cache)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out_path))
    return out_path


def write_llama_decoders(
    model: Any, out_dir: Path, kv_caches: tuple[str, ...] = ("concat",), q4: Mapping[str, Q4Blocks] | None = None
) -> dict[str, str]:
    """One graph per KV cache layout in ``kv_caches`` (named as in :data:`DECODER_FILES`), in
    ``out_dir``; returns layout -> file name.

    With one layout the graph holds its weights, as :func:`write_llama_decoder` writes it. With
    several, the graphs differ only in their attention nodes and head, so their weights are written
    once, to :data:`WEIGHTS_FILE`, and every graph points into it (ONNX external data): a build that
    serves the concat layout on any provider and the in-place one on the CPU provider costs one
    copy of the weights on disk and one sha256 pass at load, not two.
    """
    unknown = [kv for kv in kv_caches if kv not in KV_CACHES]
    if unknown or not kv_caches or len(set(kv_caches)) != len(kv_caches):
        raise BuildError(f"kv_caches must be distinct layouts from {KV_CACHES}, got {kv_caches!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(kv_caches) == 1:
        write_llama_decoder(model, out_dir / DECODER_FILES[kv_caches[0]], q4, kv_caches[0])
        return {kv_caches[0]: DECODER_FILES[kv_caches[0]]}
    shape = LlamaShape.from_config(model.config)
    state = {k: v.detach().to("cpu").float().numpy() for k, v in model.state_dict().items()}
    placed: dict[str, tuple[int, int, bytes]] = {}  # initializer name -> offset, length, bytes
    with (out_dir / WEIGHTS_FILE).open("wb") as weights:
        for kv in kv_caches:
            proto = build_llama_graph(state, shape, q4, kv)
            for tensor in proto.graph.initializer:
                data = tensor.raw_data
                if len(data) < _EXTERNAL_MIN_BYTES:
                    continue
                if tensor.name not in placed:
                    weights.write(b"\0" * (-weights.tell() % _WEIGHTS_ALIGN))
                    placed[tensor.name] = (weights.tell(), len(data), data)
                    weights.write(data)
                offset, length, written = placed[tensor.name]
                if data != written:  # the layouts must read the same weights under the same names
                    raise BuildError(f"initializer {tensor.name!r} differs between the KV cache layouts")
                external_data_helper.set_external_data(tensor, WEIGHTS_FILE, offset, length)
                tensor.ClearField("raw_data")
                tensor.data_location = TensorProto.EXTERNAL
            onnx.save_model(proto, str(out_dir / DECODER_FILES[kv]))
    return {kv: DECODER_FILES[kv] for kv in kv_caches}
