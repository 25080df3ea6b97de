"""Fixtures shared by every test folder.

The real model is built by `make model` (which `make test` runs first). A test that needs it and
finds it missing fails with the command to run: it is never skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import Settings
from router.engine import Engine
from router.engine.session import CPU, SessionSettings
from router.errors import ModelUnavailableError


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def smollm2_dir(settings: Settings) -> Path:
    return settings.model_dir()


@pytest.fixture(scope="session")
def smollm2(smollm2_dir: Path) -> Engine:
    try:
        return Engine.load(smollm2_dir, SessionSettings(providers=(CPU,)))
    except ModelUnavailableError as exc:
        pytest.fail(f"the default model is not usable ({exc}); run `make model` first")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama exported like SmolLM2, at ``<tmp>/models/tiny-llama``."""
    return tmp_path_factory.mktemp("models") / "tiny-llama"


@pytest.fixture(scope="session")
def tiny_hf(tiny_dir: Path):
    from tests.tiny_model import build_tiny

    return build_tiny(tiny_dir)


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path, tiny_hf) -> Engine:
    return Engine.load(tiny_dir, SessionSettings(providers=(CPU,)), max_samples=16)
