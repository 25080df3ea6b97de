from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from router.config import Settings


def test_defaults_point_at_the_default_model() -> None:
    s = Settings()
    assert s.model == "smollm2-135m-instruct"
    assert s.model_dir() == s.models_dir / "smollm2-135m-instruct"


def test_yaml_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "router.yaml"
    cfg.write_text("model: smollm2-135m-instruct-int8\nengine:\n  intra_op_threads: 2\n  max_samples: 8\n")
    monkeypatch.setenv("ROUTER_CONFIG", str(cfg))
    monkeypatch.setenv("ROUTER_ENGINE__MAX_SAMPLES", "16")
    s = Settings()
    assert s.model == "smollm2-135m-instruct-int8"
    assert s.engine.intra_op_threads == 2
    assert s.engine.max_samples == 16
    assert s.engine.session().intra_op_threads == 2


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_ENGINE__INTRA_OP_THREADS", "-3")
    with pytest.raises(ValidationError, match="intra_op_threads"):
        Settings()
