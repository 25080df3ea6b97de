"""`router ask` and `router feedback` against a real server; group commands' help."""

from __future__ import annotations

import json

import pytest

from router.cli import main

from .conftest import ThreadedServer


def test_ask_then_feedback_from_the_command_line(
    tiny_server: ThreadedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tiny_server.target
    assert main(["ask", "Add 2 and 3.", "--target", target, "--max-tokens", "8", "--json"]) == 0
    request_id = json.loads(capsys.readouterr().out)["request_id"]

    assert main(["feedback", request_id, "--score", "1", "--target", target]) == 0
    assert "stored" in capsys.readouterr().out
    assert main(["feedback", request_id, "--score", "0", "--target", target]) == 0
    assert "already stored" in capsys.readouterr().out
    store = tiny_server.core.store
    assert store.flush(timeout=10) and store.feedback_count(request_id) == 1

    assert main(["feedback", "no-such-request", "--score", "1", "--target", target]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert main(["feedback", request_id, "--key", "helpful", "--score", "nan", "--target", target]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert store.feedback_count(request_id) == 1


@pytest.mark.parametrize("group", ["policy", "ab", "store", "difficulty"])
def test_group_help_lists_the_actions_and_a_missing_action_is_an_error(
    group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([group, "--help"]) == 0
    assert f"usage: router {group} {{" in capsys.readouterr().out
    assert main([group]) == 2
    assert "an action is required" in capsys.readouterr().err
    assert main([group, "frobnicate"]) == 2
    assert "unknown action 'frobnicate'" in capsys.readouterr().err

