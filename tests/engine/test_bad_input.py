"""Bad inputs and damaged models give clear errors, not crashes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from router.engine import Engine, SamplingParams
from router.errors import InvalidArgumentError, ModelIntegrityError, ModelNotBuiltError


@pytest.mark.parametrize("prompt", ["", "   \n", []])
def test_empty_prompt(tiny: Engine, prompt) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        tiny.generate(prompt)
    assert err.value.field == "prompt"


def test_bad_chat_role(tiny: Engine) -> None:
    with pytest.raises(InvalidArgumentError, match="role"):
        tiny.generate([{"role": "robot", "content": "hi"}])


def test_prompt_longer_than_context(tiny: Engine) -> None:
    with pytest.raises(InvalidArgumentError, match="context holds 256"):
        tiny.generate("banana " * 600)


@pytest.mark.parametrize("n", [0, -1, 17, 10**9, 2.5, True])
def test_n_out_of_range(tiny: Engine, n) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        tiny.generate("hello", n=n)
    assert err.value.field == "n"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (SamplingParams(temperature=-0.1), "temperature"),
        (SamplingParams(temperature=float("nan")), "temperature"),
        (SamplingParams(top_p=0.0), "top_p"),
        (SamplingParams(top_p=1.5), "top_p"),
        (SamplingParams(top_k=-1), "top_k"),
        (SamplingParams(max_new_tokens=0), "max_new_tokens"),
        (SamplingParams(max_new_tokens=10**6), "max_new_tokens"),
        (SamplingParams(stop=("",)), "stop"),
        (SamplingParams(seed=-5), "seed"),
    ],
)
def test_bad_sampling_values(tiny: Engine, params: SamplingParams, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        tiny.generate("hello", params)
    assert err.value.field == field


@pytest.fixture
def model_copy(tiny_dir: Path, tiny: Engine, tmp_path: Path) -> Path:
    dst = tmp_path / "tiny-llama"
    shutil.copytree(tiny_dir, dst)
    return dst


def test_missing_manifest_names_build_command(model_copy: Path) -> None:
    (model_copy / "manifest.json").unlink()
    with pytest.raises(ModelNotBuiltError, match="router models build tiny-llama"):
        Engine.load(model_copy)


def test_corrupt_manifest(model_copy: Path) -> None:
    (model_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="corrupt.*router models build tiny-llama --force"):
        Engine.load(model_copy)


def test_manifest_missing_fields(model_copy: Path) -> None:
    data = json.loads((model_copy / "manifest.json").read_text())
    del data["architecture"]
    (model_copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelIntegrityError, match="corrupt"):
        Engine.load(model_copy)


def test_altered_model_file(model_copy: Path) -> None:
    with (model_copy / "model.onnx").open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError, match="sha256.*router models build tiny-llama --force"):
        Engine.load(model_copy)


def test_missing_model_file(model_copy: Path) -> None:
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(ModelNotBuiltError, match="tokenizer.json is missing"):
        Engine.load(model_copy)


def test_extend_needs_one_list_per_row(tiny: Engine) -> None:
    state = tiny.prefill(tiny.tokenizer.encode_prompt("hello")).fork(2)
    with pytest.raises(InvalidArgumentError, match="one token list per row"):
        tiny.extend(state, [[1]])
