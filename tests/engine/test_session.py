"""Provider choice is explicit: CPU fallback only when allowed, and the providers in use are reported."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from router.engine import Engine
from router.engine.session import CPU, CUDA, SessionSettings
from router.errors import ProviderUnavailableError

HAS_CUDA = CUDA in ort.get_available_providers()


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-CUDA refusal; the GPU path is bench/gpu_check.py")
def test_cuda_without_fallback_is_refused_with_advice(tiny_dir: Path, tiny: Engine) -> None:
    with pytest.raises(ProviderUnavailableError, match="gpu' extra.*never together"):
        Engine.load(tiny_dir, SessionSettings(providers=(CUDA,), allow_cpu_fallback=False))


def test_fallback_reports_the_provider_really_used(tiny_dir: Path, tiny: Engine) -> None:
    engine = Engine.load(tiny_dir, SessionSettings(providers=(CUDA, CPU), allow_cpu_fallback=True))
    assert engine.providers[0] == (CUDA if HAS_CUDA else CPU)


def test_thread_settings_reach_the_session(tiny_dir: Path, tiny: Engine) -> None:
    engine = Engine.load(tiny_dir, SessionSettings(providers=(CPU,), intra_op_threads=1))
    assert engine._session.get_session_options().intra_op_num_threads == 1
