"""Policy files: the shipped file loads; broken ones are refused with every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from router.difficulty.labels import label_policy
from router.errors import PolicyFileError
from router.policy import DEFAULT_POLICY_FILE, load_policies, parse_policies

GOOD = {
    "default_policy": "adaptive",
    "policies": [
        {"name": "adaptive", "rule": {"kind": "threshold", "target": 0.6}, "levels": [
            {"name": "single", "strategy": "single", "cost_tokens": 50},
            {"name": "sc", "strategy": "self_consistency", "samples": 8, "cost_tokens": 400,
             "sampling": {"temperature": 0.7, "seed": 0}, "options": {"wave": 4}},
        ]},
        {"name": "greedy", "levels": [{"name": "single", "strategy": "single"}]},
    ],
    "experiments": [{"name": "ab", "salt": "x", "arms": [{"name": "c", "policy": "greedy"},
                                                          {"name": "t", "policy": "adaptive", "weight": 2}],
                     "shadow": [{"name": "s", "policy": "adaptive"}]}],
}


def test_shipped_policy_file_loads_and_routes_the_labelled_levels() -> None:
    policies = load_policies(DEFAULT_POLICY_FILE)
    adaptive = policies.get("")
    assert adaptive.routed
    labelled = {lv.name: lv for lv in label_policy().levels}
    for name, spec in labelled.items():
        served = adaptive.level(name)
        # the classifier predicts success of exactly these runs: same strategy, samples, sampling, options
        assert (served.strategy, served.samples, served.sampling, dict(served.options)) == (
            spec.strategy, spec.samples, spec.sampling, dict(spec.options)), name
        assert served.cost_tokens > 0 and served.latency_ms > 0


def test_good_file_parses_with_defaults() -> None:
    ps = parse_policies(GOOD, "test", default_max_new_tokens=99)
    adaptive = ps.get("adaptive")
    assert adaptive.rule.kind == "threshold" and adaptive.rule.target == 0.6
    assert adaptive.default_level == "single"  # first level when not given
    assert adaptive.level("sc").sampling.max_new_tokens == 99
    assert ps.active_experiment.assign("u").policy in {"greedy", "adaptive"}
    assert [a.name for a in ps.active_experiment.shadow] == ["s"]


def test_version_follows_content_not_formatting(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(yaml.safe_dump(GOOD))
    b = tmp_path / "b.yaml"
    b.write_text(yaml.safe_dump(GOOD, default_flow_style=True, indent=4))
    assert load_policies(a).get("adaptive").version == load_policies(b).get("adaptive").version
    changed = yaml.safe_load(yaml.safe_dump(GOOD))
    changed["policies"][0]["rule"]["target"] = 0.7
    assert parse_policies(changed, "x").get("adaptive").version != load_policies(a).get("adaptive").version
    assert parse_policies(changed, "x").get("greedy").version == load_policies(a).get("greedy").version


def _broken(**edit) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    for path, value in edit.items():
        *parents, last = path.split("__")
        node = raw
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    return raw


@pytest.mark.parametrize(("edit", "message"), [
    ({"default_policy": "nope"}, "default_policy 'nope' is not one of the policies"),
    ({"policies__0__levels__1__strategy": "warp"}, "unknown strategy 'warp'"),
    ({"policies__0__levels__1__samples": 0}, "greater than or equal to 1"),
    ({"policies__0__levels__1__sampling": {"top_p": 2.0}}, "sampling.top_p"),
    ({"policies__0__rule": {"kind": "magic"}}, "rule.kind"),
    ({"policies__0__rule": {"kind": "threshold", "target": 1.5}}, "target"),
    ({"policies__0__default_level": "huge"}, "default_level 'huge' is not one of its levels"),
    ({"policies__0__cpu_max_level": "huge"}, "cpu_max_level 'huge'"),
    ({"experiments__0__arms__0__policy": "ghost"}, "unknown policy 'ghost'"),
    ({"experiments__0__arms__0__weight": 0}, "weight"),
    ({"experiments__0__arms__0__weight": float("inf")}, "weight: Input should be a finite number"),
    ({"policies__0__levels__0__cost_tokens": float("inf")}, "cost_tokens: Input should be a finite number"),
    ({"policies__0__levels__0__latency_ms": float("nan")}, "latency_ms: Input should be a finite number"),
    ({"experiments__0__shadow__0__name": "c"}, "arm names must be unique"),
    ({"policies__1__name": "adaptive"}, "policy names must be unique"),
    ({"policies__0__levels__0__typo": 1}, "Extra inputs are not permitted"),
    # strategy options are checked when the file loads, not when a request runs
    ({"policies__0__levels__1__options": {"wave": "banana"}}, "options.wave: must be an integer >= 1"),
    ({"policies__0__levels__1__options": {"stop_rule": "nonsense"}}, "options.stop_rule: must be one of"),
    ({"policies__0__levels__1__options": {"confidnce": 0.9}}, "options.confidnce: unknown option"),
    ({"policies__0__levels__0__options": {"cot": "yes"}}, "options.cot: must be true or false"),
    ({"policies__0__levels__1__strategy": "best_of_n", "policies__0__levels__1__options": {"verifier": "oracle"}},
     "options.verifier: must be one of"),
    ({"policies__0__levels__1__strategy": "step_search", "policies__0__levels__1__options": {"beam_width": 0}},
     "options.beam_width: must be an integer >= 1"),
    ({"policies__0__levels__1__samples": True}, "samples"),
    ({"policies__0__levels__1__samples": "8"}, "samples"),
    ({"policies__0__levels__1__sampling": {"max_new_tokens": 0}}, "sampling.max_new_tokens"),
])
def test_broken_files_are_refused_with_the_problem_named(edit: dict, message: str) -> None:
    with pytest.raises(PolicyFileError) as err:
        parse_policies(_broken(**edit), "bad.yaml")
    assert message in str(err.value) and "bad.yaml" in str(err.value)


def test_two_enabled_experiments_are_refused() -> None:
    raw = _broken()
    raw["experiments"].append(dict(raw["experiments"][0], name="other"))
    with pytest.raises(PolicyFileError, match="at most one experiment"):
        parse_policies(raw, "x")


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read policy file"):
        load_policies(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies: [\n  - {name: x\n")
    with pytest.raises(PolicyFileError, match="not valid YAML"):
        load_policies(bad)
    for text in ("just a string", "", "# only a comment\n", "- a\n- list\n"):
        bad.write_text(text)
        with pytest.raises(PolicyFileError, match="top level must be a mapping with default_policy and policies"):
            load_policies(bad)
    bad.write_bytes(b"default_policy: caf\xe9\n")
    with pytest.raises(PolicyFileError, match="not UTF-8"):
        load_policies(bad)
    bad.write_text(yaml.safe_dump(GOOD) + "default_policy: greedy\n")  # the same key twice
    with pytest.raises(PolicyFileError, match="'default_policy' is given twice"):
        load_policies(bad)


def test_shipped_policy_is_what_the_tuning_script_renders() -> None:
    """router/policy/default.yaml is generated: it must match the labels and classifier committed with it."""
    import subprocess
    import sys

    root = DEFAULT_POLICY_FILE.parents[2]
    out = subprocess.run([sys.executable, "scripts/tune_default_policy.py", "--check"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
