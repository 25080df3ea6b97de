"""A tiny random Llama with a tokenizer trained in the test: no download, written like SmolLM2."""

from __future__ import annotations

from pathlib import Path

from router.engine.manifest import Architecture, Manifest, sha256_file

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Add 17 and 25. The sum is 42. Count the letters in the word banana.",
    "Which is larger, 19 or 71? 71 is larger. Think step by step, then answer.",
    "user assistant system question answer number word letter step",
] * 4


def train_tokenizer(path: Path) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(str(path))
    return tok.get_vocab_size()


def q4_representable(model, seed: int) -> dict:
    """Give every projection of ``model`` random Q4_1 blocks' values; returns the blocks by name."""
    import numpy as np
    import torch

    from router.modelbuild.q4 import Q4Blocks

    rng = np.random.default_rng(seed)
    blocks = {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("_proj.weight"):
                rows, cols = param.shape
                b = Q4Blocks(q=rng.integers(0, 16, (rows, cols // 32, 32)).astype(np.uint8),
                             d=rng.uniform(0.002, 0.02, (rows, cols // 32)).astype(np.float32),
                             m=rng.uniform(-0.15, 0.0, (rows, cols // 32)).astype(np.float32))
                param.copy_(torch.from_numpy(b.dequantize()))
                blocks[name] = b
    return blocks


def build_tiny(out: Path, seed: int = 0, context: int = 256, q4_dir: Path | None = None,
               kv_caches: tuple[str, ...] = ("concat",)):
    """Write a random 2-layer Llama to ``out`` with a manifest; returns the HF model.

    With ``q4_dir``, the projections get Q4_1-representable weights and a q4 build of the same
    weights goes to ``q4_dir`` (as ``router models build`` makes ``smollm2-135m-instruct-q4``).
    ``kv_caches``: a graph per layout over one weights file, as the default SmolLM2 build has
    ``("concat", "inplace")``.
    """
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from router.modelbuild.graph import write_llama_decoder, write_llama_decoders

    out.mkdir(parents=True, exist_ok=True)
    vocab = train_tokenizer(out / "tokenizer.json")
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
        rope_theta=100000.0, tie_word_embeddings=True, eos_token_id=2, bos_token_id=1, pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharpen the random logits so greedy choices are not near-ties
        model.lm_head.weight.mul_(4.0)
    q4 = q4_representable(model, seed) if q4_dir is not None else None
    decoders = write_llama_decoders(model, out, kv_caches)
    _write_manifest(out, "tiny-llama", "fp32", seed, vocab, context, decoders)
    if q4_dir is not None:
        q4_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out / "tokenizer.json", q4_dir / "tokenizer.json")
        write_llama_decoder(model, q4_dir / "model.onnx", q4)
        _write_manifest(q4_dir, "tiny-llama-q4", "q4_1", seed, vocab, context, {"concat": "model.onnx"})
    return model


def _write_manifest(out: Path, name: str, dtype: str, seed: int, vocab: int, context: int,
                    decoders: dict[str, str]) -> None:
    kv_cache, decoder_file = next(iter(decoders.items()))
    manifest = Manifest(
        name=name,
        dtype=dtype,
        source={"kind": "random", "seed": seed, "sha256": f"random-seed-{seed}"},
        files={f.name: sha256_file(f) for f in sorted(out.iterdir()) if f.is_file() and f.name != "manifest.json"},
        architecture=Architecture(
            family="llama", num_layers=2, hidden_size=64, num_attention_heads=4, num_kv_heads=2,
            head_dim=16, vocab_size=vocab, rope_theta=100000.0,
        ),
        context_length=context,
        eos_token_ids=[2],
        chat_template=CHAT_TEMPLATE,
        build={"builder_version": 0},
        decoder_file=decoder_file,
        kv_cache=kv_cache,
        extra_decoders={kv: f for kv, f in decoders.items() if kv != kv_cache},
    )
    (out / "manifest.json").write_text(manifest.to_json())
