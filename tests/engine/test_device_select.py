"""Token selection on the decoder's device (router/engine/device_select.py), run here on the CPU
provider: the same graphs that run on CUDA, fed the same uniforms as the host's selection, must
pick the host's tokens; an engine selecting on the device must generate what the host engine does,
through compaction, forks and ragged extends; greedy stays on the host; a tampered graph is refused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from router.engine import Engine, SamplingParams
from router.engine.device_select import ARTIFACTS, DeviceTokenSelector, model_file
from router.engine.sampling import _truncated, row_generators, select_tokens
from router.engine.session import CPU, SessionSettings
from router.errors import ModelIntegrityError
from router.modelbuild.selector import POOL
from tests.engine.stand_ins import CudaSessionReport

REPO = Path(__file__).resolve().parents[2]
PROMPT = "Count the letters in the word banana."
PARAMS = [
    SamplingParams(temperature=1.0),
    SamplingParams(temperature=0.7),
    SamplingParams(temperature=0.3, top_p=0.95),
    SamplingParams(temperature=0.7, top_k=50),
    SamplingParams(temperature=0.7, top_k=50, top_p=0.9),
    SamplingParams(temperature=1.3, top_p=0.5),
]


@pytest.fixture(scope="module")
def selector() -> DeviceTokenSelector:
    return DeviceTokenSelector([CPU])


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"t{p.temperature}-k{p.top_k}-p{p.top_p}")
@pytest.mark.parametrize("scale", [1.0, 3.0, 8.0])  # flat to peaked distributions
def test_the_device_graphs_pick_the_hosts_tokens(selector: DeviceTokenSelector, params: SamplingParams,
                                                 scale: float) -> None:
    rows, vocab = 48, 49152  # SmolLM2's vocabulary: float32 running sums over it would drift
    logits = (np.random.default_rng(int(scale * 10)).standard_normal((rows, 1, vocab)) * scale).astype(np.float32)
    want, want_lp = select_tokens(logits[:, 0].copy(), params, row_generators(7, rows))
    uniforms = np.array([g.random() for g in row_generators(7, rows)])
    got = selector.select(ort.OrtValue.ortvalue_from_numpy(logits), np.arange(rows), params, uniforms, vocab)
    # The step is handed back exactly when some row's support is larger than the sorted pool.
    shifted = logits[:, 0] - logits[:, 0].max(axis=1, keepdims=True)
    support = max(len(_truncated(row / np.float32(params.temperature), params)[0]) for row in shifted)
    truncated = params.top_k > 0 or params.top_p < 1.0
    assert (got is None) == (truncated and support > POOL), support
    if got is not None:
        np.testing.assert_array_equal(got[0], want)
        np.testing.assert_allclose(got[1], want_lp, atol=1e-4)
        tokens, _ = select_tokens(logits[:, 0].copy(), params, row_generators(99, rows), uniforms)
        np.testing.assert_array_equal(tokens, want)  # the host, given the device's draws, agrees


def test_a_subset_of_rows_in_any_order(selector: DeviceTokenSelector) -> None:
    logits = (np.random.default_rng(1).standard_normal((6, 1, 500)) * 4).astype(np.float32)
    rows = np.array([4, 0, 5])
    params = SamplingParams(temperature=0.8, top_p=0.9)
    want, _ = select_tokens(logits[rows, 0].copy(), params, row_generators(3, 3))
    uniforms = np.array([g.random() for g in row_generators(3, 3)])
    got = selector.select(ort.OrtValue.ortvalue_from_numpy(logits), rows, params, uniforms, 500)
    assert got is not None
    np.testing.assert_array_equal(got[0], want)


@pytest.fixture(scope="module")
def engines(tiny_dir: Path, tiny_hf) -> tuple[Engine, Engine]:
    settings = SessionSettings(providers=(CPU,))
    return (Engine.load(tiny_dir, settings, max_samples=16),
            Engine.load(tiny_dir, settings, max_samples=16, device_selection=True, device_selection_min_rows=1))


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=1.0, max_new_tokens=30, seed=11, stop=("a",)),  # rows end apart: compaction
    SamplingParams(temperature=0.6, top_p=0.9, max_new_tokens=24, seed=3),
    SamplingParams(temperature=0.9, top_k=20, max_new_tokens=24, seed=5),
])
def test_an_engine_selecting_on_the_device_generates_what_the_host_does(
    engines: tuple[Engine, Engine], params: SamplingParams
) -> None:
    host, device = engines
    before = device.stats.device_selections
    a, b = (e.generate(PROMPT, params, n=8) for e in engines)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    np.testing.assert_allclose([lp for c in a for lp in c.logprobs], [lp for c in b for lp in c.logprobs], atol=1e-4)
    assert device.stats.device_selections - before >= max(len(c.token_ids) for c in b) - 1
    assert host.stats.device_selections == 0


def test_greedy_stays_on_the_host(engines: tuple[Engine, Engine]) -> None:
    host, device = engines
    before = device.stats.device_selections
    a, b = (e.generate(PROMPT, SamplingParams(max_new_tokens=20))[0] for e in engines)
    assert a.token_ids == b.token_ids
    assert device.stats.device_selections == before


def test_forks_and_extends_read_logits_left_on_the_device(engines: tuple[Engine, Engine]) -> None:
    results = []
    for engine in engines:
        tok = engine.tokenizer
        state = engine.prefill(tok.encode_prompt(PROMPT))
        first = engine.decode(state, SamplingParams(temperature=1.0, max_new_tokens=5, seed=2))  # state kept
        children = engine.extend(state.fork(3), [[], tok.encode(" banana"), tok.encode(" the")])
        second = engine.decode(children, SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=8, seed=4))
        results.append(([c.token_ids for c in first], [c.token_ids for c in second]))
    assert results[0] == results[1]


def test_a_tampered_selector_graph_is_refused(tmp_path: Path) -> None:
    shutil.copytree(ARTIFACTS, tmp_path, dirs_exist_ok=True)
    path = tmp_path / model_file("truncated")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="build_token_selector.py"):
        DeviceTokenSelector([CPU], artifacts=tmp_path)


def test_the_committed_graphs_are_what_the_script_writes() -> None:
    done = subprocess.run([sys.executable, "scripts/build_token_selector.py", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rows_left_out_of_a_one_token_pass_keep_their_logits(engines: tuple[Engine, Engine]) -> None:
    runs = []
    for engine in engines:
        tok = engine.tokenizer
        a, b, c, d = (tok.encode(w)[0] for w in (" so", " the", " word", " is"))
        state = engine.extend(engine.prefill(tok.encode_prompt(PROMPT)), [[a]])  # logits on the device
        rows = engine.extend(state.fork(3), [[b], [], [c]])  # row 1 keeps the fork's logits
        engine.extend(rows, [[d], [], []])  # row 2 keeps those of the pass before
        logits = rows.logits.copy()
        out = engine.decode(rows, SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=10, seed=8))
        runs.append((logits, [c.token_ids for c in out]))
    (host_logits, host_tokens), (device_logits, device_tokens) = runs
    np.testing.assert_allclose(device_logits, host_logits, atol=1e-5)
    assert device_tokens == host_tokens


def test_a_step_handed_back_is_selected_on_the_host_with_the_same_draws(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, device = engines
    assert device._selector is not None
    monkeypatch.setattr(device._selector, "select", lambda *args: None)  # as for a support beyond the pool
    before = device.stats.device_selections
    params = SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=16, seed=21)
    a, b = (e.generate(PROMPT, params, n=4) for e in engines)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert device.stats.device_selections == before


def test_batches_below_the_row_threshold_select_on_the_host(tiny_dir: Path, tiny_hf) -> None:
    engine = Engine.load(tiny_dir, SessionSettings(providers=(CPU,)), max_samples=16, device_selection=True,
                         device_selection_min_rows=8)
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=2)
    engine.generate(PROMPT, params, n=4)
    assert engine.stats.device_selections == 0
    engine.generate(PROMPT, params, n=8)
    assert engine.stats.device_selections > 0


def test_on_cuda_a_selector_that_does_not_load_leaves_selection_on_the_host(
    tiny: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(providers: list[str]) -> DeviceTokenSelector:
        raise ModelIntegrityError("token selector missing; run python scripts/build_token_selector.py")

    monkeypatch.setattr("router.engine.engine.DeviceTokenSelector", broken)
    with caplog.at_level("WARNING"):
        engine = Engine(tiny.model_dir, tiny.manifest, CudaSessionReport())  # on by default on CUDA
    assert engine._selector is None
    assert "selected on the host" in caplog.text
    with pytest.raises(ModelIntegrityError, match="build_token_selector"):  # asked for: an error
        Engine(tiny.model_dir, tiny.manifest, CudaSessionReport(), device_selection=True)
