"""Export a transformers causal LM to an ONNX decoder with a KV cache.

Why this exporter: DESIGN.md §3 measured two that both match ``transformers.generate`` token for
token. optimum-onnx is faster to run but needs transformers < 4.58, which silently misreads the
rope_theta of configs saved by 5.x and mis-tokenizes the GGUF. ``torch.onnx.export(dynamo=True)``
works straight from the transformers 5.x model, so that is what we use.

The graph has the optimum layout so the engine can run either:
inputs ``input_ids, attention_mask, position_ids, past_key_values.{i}.key/value``;
outputs ``logits, present.{i}.key/value``. KV tensors are ``[batch, kv_heads, seq, head_dim]``.
``position_ids`` is explicit and ``attention_mask`` covers past + new slots, so a row may hold
masked padding slots anywhere: the engine uses that for ragged batches after a fork.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class _DecoderWithFlatCache(torch.nn.Module):
    """Wraps a causal LM so that its cache goes in and out as flat tensors."""

    def __init__(self, model: Any, num_layers: int) -> None:
        super().__init__()
        self.model = model
        self.num_layers = num_layers

    def forward(self, input_ids, attention_mask, position_ids, *past: torch.Tensor):
        from transformers.cache_utils import DynamicCache

        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(self.num_layers)]
        cache = DynamicCache(pairs, config=self.model.config)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        present = []
        for layer in out.past_key_values.layers:
            present.extend([layer.keys, layer.values])
        return (out.logits, *present)


def io_names(num_layers: int) -> tuple[list[str], list[str]]:
    """Input and output names of the exported decoder (optimum layout)."""
    inputs = ["input_ids", "attention_mask", "position_ids"]
    outputs = ["logits"]
    for i in range(num_layers):
        inputs += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        outputs += [f"present.{i}.key", f"present.{i}.value"]
    return inputs, outputs


def export_decoder(model: Any, out_path: Path, opset: int = 18) -> Path:
    """Export ``model`` (a transformers causal LM in eval mode) to ``out_path`` as one ONNX file."""
    cfg = model.config
    n_layers = cfg.num_hidden_layers
    n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    wrapper = _DecoderWithFlatCache(model.eval(), n_layers).eval()

    batch, new, past_len = 2, 3, 4
    input_ids = torch.randint(0, cfg.vocab_size, (batch, new), dtype=torch.int64)
    attention_mask = torch.ones(batch, past_len + new, dtype=torch.int64)
    position_ids = torch.arange(past_len, past_len + new, dtype=torch.int64).expand(batch, -1)
    dtype = next(model.parameters()).dtype
    past = [torch.randn(batch, n_kv, past_len, head_dim, dtype=dtype) for _ in range(2 * n_layers)]

    b = torch.export.Dim("batch", min=1, max=1024)
    s = torch.export.Dim("sequence", min=1, max=cfg.max_position_embeddings)
    p = torch.export.Dim("past_sequence", min=0, max=cfg.max_position_embeddings)
    total = torch.export.Dim("total_sequence", min=1, max=2 * cfg.max_position_embeddings)
    dynamic_shapes = (
        {0: b, 1: s},
        {0: b, 1: total},
        {0: b, 1: s},
        tuple({0: b, 2: p} for _ in past),  # the *past varargs count as one element
    )
    in_names, out_names = io_names(n_layers)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            (input_ids, attention_mask, position_ids, *past),
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=in_names,
            output_names=out_names,
            opset_version=opset,
            external_data=False,
            optimize=True,
        )
    program.save(str(out_path))
    return out_path
