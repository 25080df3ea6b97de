"""The fused decoder graph against transformers' own forward pass (tiny random Llama, no download)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from router.errors import BuildError
from router.modelbuild.graph import LlamaShape, write_llama_decoder, write_llama_decoders
from tests.tiny_model import q4_representable

LAYERS, KV_HEADS, HEAD_DIM = 2, 2, 16


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[LlamaForCausalLM, ort.InferenceSession, Path]:
    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=LAYERS,
                      num_attention_heads=4, num_key_value_heads=KV_HEADS, max_position_embeddings=64,
                      rope_theta=10000.0, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    path = write_llama_decoder(model, tmp_path_factory.mktemp("graph") / "model.onnx")
    return model, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), path


def run(session: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray,
        past: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    if past is None:
        past = [np.zeros((len(ids), KV_HEADS, 0, HEAD_DIM), np.float32)] * (2 * LAYERS)
    feed = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
    for i in range(LAYERS):
        feed[f"past_key_values.{i}.key"], feed[f"past_key_values.{i}.value"] = past[2 * i], past[2 * i + 1]
    logits, *present = session.run(None, feed)
    return logits, present


def hf_forward(model: LlamaForCausalLM, ids: np.ndarray, mask: np.ndarray,
               pos: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """transformers' logits ``[B, S, V]`` and cache (keys and values per layer, after rotary)."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(pos), use_cache=True)
    cache = [t.numpy() for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
    return out.logits.numpy(), cache


def test_ragged_rows_match_transformers_run_alone(tiny_llama) -> None:
    """The engine's ragged pattern: row 0 gets 6 new tokens padded to row 1's 9, then both decode
    one token over a cache whose row 0 now has masked holes. Each row's next-token logits and live
    cache slots equal transformers running that row alone."""
    model, session, _ = tiny_llama
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 97, 6).tolist(), rng.integers(0, 97, 9).tolist()]
    ids = np.array([rows[0] + [0, 0, 0], rows[1]], np.int64)
    mask = np.array([[1] * 6 + [0] * 3, [1] * 9], np.int64)
    pos = np.tile(np.arange(9), (2, 1)).astype(np.int64)
    logits, present = run(session, ids, mask, pos)
    assert logits.shape == (2, 1, 97)
    for r, toks in enumerate(rows):
        ref_logits, ref_cache = hf_forward(model, np.array([toks]), np.ones((1, len(toks)), np.int64),
                                           np.arange(len(toks))[None])
        np.testing.assert_allclose(logits[r, 0], ref_logits[0, -1], atol=1e-4)
        for ours, ref in zip(present, ref_cache, strict=True):
            np.testing.assert_allclose(ours[r][:, mask[r].astype(bool)], ref[0], atol=1e-5)

    nxt = [5, 7]
    mask2 = np.concatenate([mask, [[1], [1]]], axis=1)
    logits2, _ = run(session, np.array([[5], [7]], np.int64), mask2, np.array([[6], [9]], np.int64), present)
    for r, toks in enumerate(rows):
        seq = toks + [nxt[r]]
        ref_logits, _ = hf_forward(model, np.array([seq]), np.ones((1, len(seq)), np.int64), np.arange(len(seq))[None])
        np.testing.assert_allclose(logits2[r, 0], ref_logits[0, -1], atol=1e-4)


def test_cache_continuation_equals_one_pass(tiny_llama) -> None:
    """Prefill 6 tokens, then extend by 3 through the cache: the same as 9 tokens at once."""
    model, session, _ = tiny_llama
    ids = np.random.default_rng(1).integers(0, 97, (1, 9)).astype(np.int64)
    pos = np.arange(9, dtype=np.int64)[None]
    full, full_present = run(session, ids, np.ones((1, 9), np.int64), pos)
    _, present = run(session, ids[:, :6], np.ones((1, 6), np.int64), pos[:, :6])
    assert present[0].shape == (1, KV_HEADS, 6, HEAD_DIM)
    tail, present = run(session, ids[:, 6:], np.ones((1, 9), np.int64), pos[:, 6:], present)
    assert present[0].shape == (1, KV_HEADS, 9, HEAD_DIM)
    np.testing.assert_allclose(tail, full, atol=1e-5)
    for a, b in zip(present, full_present, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    ref_logits, _ = hf_forward(model, ids, np.ones((1, 9), np.int64), pos)
    np.testing.assert_allclose(full[0, 0], ref_logits[0, 8], atol=1e-4)


def test_each_layer_is_a_handful_of_fused_nodes(tiny_llama) -> None:
    """The point of the writer: ~13 nodes per layer, not the ~60 of a traced export."""
    _, _, path = tiny_llama
    ops = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    assert ops["Attention"] == ops["RotaryEmbedding"] / 2 == LAYERS
    assert ops["SkipSimplifiedLayerNormalization"] == 2 * LAYERS
    assert sum(ops.values()) <= 13 * LAYERS + 30


def test_the_inplace_cache_writes_its_new_slots_into_the_bound_buffers(tiny_llama, tmp_path: Path) -> None:
    """GroupQueryAttention instead of Attention, past and present one buffer: the same logits as the
    concat graph, the new step's keys and values written into the caller's buffers in place."""
    model, concat, _ = tiny_llama
    path = write_llama_decoder(model, tmp_path / "inplace.onnx", kv_cache="inplace")
    ops = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    assert ops["GroupQueryAttention"] == LAYERS and ops["Attention"] == 0
    assert ops["RotaryEmbedding"] == 0 and ops["Split"] == LAYERS  # rotary inside GQA; gate|up split only
    inplace = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 97, (2, 5))
    _, present = run(concat, ids, np.ones((2, 5), np.int64), np.tile(np.arange(5), (2, 1)))
    capacity = 16
    buffers = []
    for p in present:
        buf = np.zeros((2, KV_HEADS, capacity, HEAD_DIM), np.float32)
        buf[:, :, :5] = p
        buffers.append(buf)
    step = np.array([[7], [11]])
    mask, pos = np.ones((2, 6), np.int64), np.full((2, 1), 5)
    want_logits, want_present = run(concat, step, mask, pos, present)
    binding = inplace.io_binding()
    binding.bind_cpu_input("input_ids", step)
    binding.bind_cpu_input("attention_mask", mask)
    binding.bind_cpu_input("position_ids", pos)
    binding.bind_cpu_input("exact_logits", np.array(True))  # the float32 head (router/engine/greedy_head.py)
    binding.bind_output("logits", "cpu")
    values = [ort.OrtValue.ortvalue_from_numpy(b) for b in buffers]
    for i in range(LAYERS):
        for j, kv in enumerate(("key", "value")):
            binding.bind_ortvalue_input(f"past_key_values.{i}.{kv}", values[2 * i + j])
            binding.bind_ortvalue_output(f"present.{i}.{kv}", values[2 * i + j])
    inplace.run_with_iobinding(binding)
    np.testing.assert_allclose(binding.get_outputs()[0].numpy(), want_logits, atol=1e-5)
    for buf, want in zip(buffers, want_present, strict=True):
        np.testing.assert_allclose(buf[:, :, :6], want, atol=1e-6)  # slot 5 written in place
        assert not buf[:, :, 6:].any()
    with pytest.raises(BuildError, match="kv_cache"):
        write_llama_decoder(model, tmp_path / "bad.onnx", kv_cache="paged")
    for bad in (("paged",), ("concat", "concat"), ()):
        with pytest.raises(BuildError, match="kv_caches must be distinct layouts"):
            write_llama_decoders(model, tmp_path / "bad", bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "RoPE scaling"),
        ({"attention_bias": True}, "biases"),
        ({"hidden_act": "gelu"}, "activation"),
    ],
)
def test_unsupported_architectures_are_refused(change: dict, message: str) -> None:
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, **change)
    with pytest.raises(BuildError, match=message):
        LlamaShape.from_config(cfg)


def test_q4_blocks_give_the_same_logits_as_their_fp32_dequantization(tmp_path: Path) -> None:
    """Give a tiny Llama Q4_1-representable weights: the 4-bit graph (MatMulNBits + the per-block
    min correction) must compute what the fp32 graph computes from the dequantized weights."""
    torch.manual_seed(5)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=LAYERS,
                      num_attention_heads=4, num_key_value_heads=KV_HEADS, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg).eval()
    q4 = q4_representable(model, seed=0)
    rng = np.random.default_rng(0)
    fp32 = ort.InferenceSession(str(write_llama_decoder(model, tmp_path / "fp32.onnx")))
    packed = write_llama_decoder(model, tmp_path / "q4.onnx", q4)
    ops = Counter(node.op_type for node in onnx.load(str(packed)).graph.node)
    assert ops["MatMulNBits"] == 4 * LAYERS  # q|k|v, o, gate|up, down
    q4_session = ort.InferenceSession(str(packed))
    ids = rng.integers(0, 97, (2, 7)).astype(np.int64)
    mask, pos = np.ones((2, 7), np.int64), np.tile(np.arange(7), (2, 1)).astype(np.int64)
    ours, ours_cache = run(q4_session, ids, mask, pos)
    ref, ref_cache = run(fp32, ids, mask, pos)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    for a, b in zip(ours_cache, ref_cache, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_q4_blocks_that_do_not_match_the_weights_are_refused(tmp_path: Path) -> None:
    torch.manual_seed(6)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=KV_HEADS, max_position_embeddings=64)
    model, other = LlamaForCausalLM(cfg).eval(), LlamaForCausalLM(cfg).eval()
    name = "model.layers.0.mlp.down_proj.weight"
    blocks = q4_representable(other, seed=1)[name]  # Q4_1 blocks, but another model's weights
    with pytest.raises(BuildError, match="do not dequantize"):
        write_llama_decoder(model, tmp_path / "bad.onnx", {name: blocks})
