"""The command line's own messages for names it cannot use (no model is loaded)."""

from __future__ import annotations

import pytest

from router.cli import main


def test_unknown_model_names_are_refused_with_what_exists(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "build", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuch'" in err and "smollm2-135m-instruct" in err and '"' not in err
    assert main(["generate", "hi", "--model", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no model 'nosuch'" in err and "router models build nosuch" not in err
    assert main(["generate", "hi", "--model", "../../etc"]) == 2
    assert "takes a model name" in capsys.readouterr().err
