from __future__ import annotations

from pathlib import Path

import pytest

from router.engine import Engine
from router.engine.session import CPU, SessionSettings

from .tiny import build_tiny


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_hf(tiny_dir: Path):
    return build_tiny(tiny_dir)


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path, tiny_hf) -> Engine:
    return Engine.load(tiny_dir, SessionSettings(providers=(CPU,)), max_samples=16)
