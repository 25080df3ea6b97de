"""The single-row decoder: a q4 build of the same weights runs one-row decode steps only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.engine import Engine, SamplingParams
from router.engine.session import CPU, SessionSettings
from router.errors import ModelIntegrityError

SESSION = SessionSettings(providers=(CPU,))
PROMPTS = ["What is the capital of France?", "Add 17 and 25.", "Which is larger, 19 or 71?"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.tiny_model import build_tiny

    root = tmp_path_factory.mktemp("pair")
    build_tiny(root / "fp32", seed=4, q4_dir=root / "q4")
    return root / "fp32", root / "q4"


def test_single_passes_decode_on_the_single_row_decoder_with_the_same_tokens(pair: tuple[Path, Path]) -> None:
    fp32_dir, q4_dir = pair
    plain, hybrid = Engine.load(fp32_dir, SESSION), Engine.load(fp32_dir, SESSION, single_row_dir=q4_dir)
    params = SamplingParams(max_new_tokens=20)
    for prompt in PROMPTS:
        forwards, single = hybrid.stats.forward_calls, hybrid.stats.single_row_forwards
        ours = hybrid.generate(prompt, params)[0]
        assert ours.token_ids == plain.generate(prompt, params)[0].token_ids
        assert ours.completion_tokens > 1
        # the prefill stays on the main decoder; every forward after it ran single-row
        assert hybrid.stats.single_row_forwards - single == hybrid.stats.forward_calls - forwards - 1 > 0
    assert plain.stats.single_row_forwards == 0


def test_batches_stay_on_the_main_decoder(pair: tuple[Path, Path]) -> None:
    fp32_dir, q4_dir = pair
    hybrid = Engine.load(fp32_dir, SESSION, single_row_dir=q4_dir)
    comps = hybrid.generate(PROMPTS[1], SamplingParams(max_new_tokens=12), n=4)  # greedy: rows finish together
    assert len(comps) == 4 and hybrid.stats.decode_steps > 0
    assert hybrid.stats.single_row_forwards == 0


def test_a_decoder_of_other_weights_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    fp32_dir, q4_dir = pair
    other = tmp_path / "other"
    other.mkdir()
    for f in q4_dir.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["source"]["sha256"] = "some-other-gguf"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="not a build of the same source"):
        Engine.load(fp32_dir, SESSION, single_row_dir=other)


def test_settings_wire_the_single_row_model(pair: tuple[Path, Path]) -> None:
    from router.config import EngineSettings, Settings

    fp32_dir, q4_dir = pair
    settings = Settings(models_dir=fp32_dir.parent, model=fp32_dir.name,
                        engine=EngineSettings(providers=[CPU], single_row_model=q4_dir.name))
    engine = settings.load_engine()
    engine.generate(PROMPTS[0], SamplingParams(max_new_tokens=6))
    assert engine.stats.single_row_forwards > 0
    off = Settings(models_dir=fp32_dir.parent, model=fp32_dir.name, engine=EngineSettings(providers=[CPU]))
    assert off.single_row_dir() is None and off.load_engine().stats.single_row_forwards == 0
