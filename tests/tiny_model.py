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


def build_tiny(out: Path, seed: int = 0, context: int = 256):
    """Write a random 2-layer Llama to ``out`` with a manifest; returns the HF model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from router.modelbuild.graph import write_llama_decoder

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
    write_llama_decoder(model, out / "model.onnx")
    manifest = Manifest(
        name="tiny-llama",
        dtype="fp32",
        source={"kind": "random", "seed": seed},
        files={f: sha256_file(out / f) for f in ("model.onnx", "tokenizer.json")},
        architecture=Architecture(
            family="llama", num_layers=2, hidden_size=64, num_attention_heads=4, num_kv_heads=2,
            head_dim=16, vocab_size=vocab, rope_theta=100000.0,
        ),
        context_length=context,
        eos_token_ids=[2],
        chat_template=CHAT_TEMPLATE,
        build={"builder_version": 0},
    )
    (out / "manifest.json").write_text(manifest.to_json())
    return model
