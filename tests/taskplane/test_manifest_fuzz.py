"""No manifest crashes ``taskplane validate``: any text, any bytes, any shape of YAML
(deep nesting, chains and cycles of thousands of agents, alias bombs, absurd numbers,
wrong types) is a manifest or a ``ManifestError``/``UserInputError`` naming a place;
the CLI exits 0 or 2 without a traceback (limits: docs/manifest.md, "Limits")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskplane._manifest_yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES
from taskplane.contract.cron import ApplySchedules
from taskplane.contract.plan import SystemDefinition
from taskplane.exceptions import ManifestError, UserInputError
from taskplane.manifest import (
    AgentSystemManifest,
    load_manifest_file,
    load_manifest_text,
    manifest_version,
    validate_manifest,
)
from taskplane.plan_summary import plan_summary, render_plan_summary
from taskplane.processors.orchestrator.decider import _plan_problem
from taskplane.streams.serde import Serde, new_meta

HEAD = "apiVersion: taskplane.dev/v1\nkind: AgentSystem\nmetadata: {name: fuzz}\n"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refused_or_valid(load: Any, source: Any) -> ManifestError | None:
    """Loads ``source``; a refusal must name where each problem is."""
    try:
        load(source)
    except ManifestError as error:
        assert error.problems and all(p.path and p.reason for p in error.problems)
        return error
    except UserInputError as error:
        assert error.exit_code == 2
    return None


def chain(count: int, cycle: bool = False) -> str:
    last = count if not cycle else 0
    agents = "".join(f"    - name: a{i}\n      dependencies: [a{i + 1 if i + 1 < count else last}]\n"
                     for i in range(count))
    return HEAD + "spec:\n  agents:\n" + agents + ("" if cycle else f"    - name: a{count}\n")


def alias_bomb(levels: int = 9) -> str:
    lines = ["x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, levels)]
    return HEAD + "anchors:\n" + "".join(f"  {line}\n" for line in lines) + \
        f"spec:\n  agents:\n    - name: a\n      tools: *x{levels - 1}\n"


WORST: dict[str, str] = {
    "chain of 1500 agents": chain(1500),  # deeper than the interpreter's recursion limit
    "cycle of 1500 agents": chain(1500, cycle=True),
    "nesting 10000 deep": HEAD + "spec:\n  agents:\n    - name: a\n      model: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "billion laughs": alias_bomb(),
    "an alias inside itself": HEAD + "spec:\n  agents:\n    - &a {name: a, tools: [*a]}\n",
    "a 5000-digit number": HEAD + "spec:\n  agents: [{name: a}]\n  execution: {maxRetries: " + "9" * 5000 + "}\n",
    "absurd floats": HEAD + "spec:\n  agents: [{name: a}]\n  execution: {backoffMultiplier: .inf, jitterFraction: .nan,"
                            " leaseTimeout: 1e400}\n",
    "a bad date": HEAD + "spec:\n  agents: [{name: a, model: 2024-13-45}]\n",
    "over the size limit": HEAD + "spec:\n  agents:\n" + "    - {name: a, model: " + "m" * MAX_BYTES + "}\n",
}


@pytest.mark.parametrize("case", WORST)
def test_the_worst_manifests_are_refused_with_a_place_or_valid(case: str) -> None:
    error = refused_or_valid(load_manifest_text, WORST[case])
    if case == "chain of 1500 agents":
        assert error is None
        manifest = load_manifest_text(WORST[case])
        assert manifest.topological_order()[0].name == "a1500"
        assert _plan_problem(manifest.to_plan("v")) is None
    else:
        assert error is not None, case


def test_the_limits_say_what_they_are() -> None:
    deep = HEAD + "spec: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    assert "nested deeper than 32 levels" in str(refused_or_valid(load_manifest_text, deep))
    assert f"more than {MAX_NODES} values" in str(refused_or_valid(load_manifest_text, WORST["billion laughs"]))
    assert "refers to a value that contains it" in str(
        refused_or_valid(load_manifest_text, WORST["an alias inside itself"]))
    cycle = refused_or_valid(load_manifest_text, WORST["cycle of 1500 agents"])
    assert cycle is not None and cycle.problems[0].reason.startswith("dependency cycle a0 -> a1 -> a2")


def test_the_decider_checks_a_plan_of_thousands_of_agents_linearly() -> None:
    manifest = load_manifest_text(chain(1500))
    plan = manifest.to_plan("v")
    looped = plan.agents[-1].__class__(plan.agents[-1].name, None, (), ("a0",))
    broken = plan.__class__(plan.name, plan.version, (*plan.agents[:-1], looped), plan.execution)
    problem = _plan_problem(broken)
    assert problem is not None and problem.startswith("dependency cycle among a0, a1, a10")


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "system.yaml"
    path.write_bytes(HEAD.encode() + b"spec:\n  agents: [{name: \xff}]\n")
    error = refused_or_valid(load_manifest_file, path)
    assert error is not None and error.problems[0] == ("line 5, column 19", "not UTF-8 text (byte 0xff)")


# ------------------------------------------------------------------ hypothesis

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.sampled_from(["10s", "-1s", "1e9h", "parser", "none", "wasm", "", "0", "<<", "9" * 400,
                              "9" * 25 + "h", "100/min", "0/s", "5/" + "9" * 20 + "h", "9" * 25 + "/min",
                              "100/fortnight", "*/5 * * * *", "61 * * * *", "0 0 31 2 *", "Europe/Paris",
                              "Mars/Olympus", "forbid", "1.5"]))
# The keys of spec.scheduling, spec.schedules, spec.policy and a tool's limits (issue 27):
# the values put under them are where numbers reach the Avro longs of an apply.
KEYS = ["name", "tools", "dependencies", "timeout", "fallback", "model", "maxRetries", "rateLimit", "concurrency",
        "retries", "tenants", "weight", "maxConcurrent", "defaultWeight", "defaultMaxConcurrent", "priorityAging",
        "window", "releaseTimeout", "cron", "timeZone", "input", "concurrencyPolicy", "startingDeadline",
        "maxTokensPerRun", "maxCostPerRun", "leaseTimeout", "backoffMultiplier", "maxBackoffCap"]
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12) | st.sampled_from(KEYS), inner, max_size=4),
                      max_leaves=30)


@st.composite
def manifests(draw: st.DrawFn) -> object:
    """A plausible manifest with random values put in random places."""
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=6))
    agents: list[Any] = [{"name": name, "dependencies": draw(st.lists(st.sampled_from([*names, "zz"]), max_size=3)),
                          "tools": draw(st.lists(st.sampled_from(["t.x", "t.y"]) | VALUES, max_size=2))}
                         for name in names]
    document: dict[str, Any] = {"apiVersion": "taskplane.dev/v1", "kind": "AgentSystem",
                                "metadata": {"name": "fuzz"},
                                "spec": {"agents": agents, "execution": draw(VALUES), "breakers": draw(VALUES)}}
    for _ in range(draw(st.integers(0, 3))):  # overwrite something with anything
        target: Any = draw(st.sampled_from([document, document["spec"], *agents]))
        if not isinstance(target, dict):  # spec itself overwritten with a scalar by an earlier round
            continue
        target[draw(st.sampled_from([*target.keys(), "extra"]))] = draw(VALUES)
    return document


# The fields where a number or a name reaches what ``apply`` encodes: each (its path, the
# mapping it lives in, its key) in a manifest that is valid until they are set.
SET_FIELDS = {
    "spec.execution": ["leaseTimeout", "maxRetries", "initialBackoff", "backoffMultiplier", "maxBackoffCap",
                       "finishedRunRetention", "jitterFraction"],
    "spec.breakers": ["failureThreshold", "cooldown"],
    "spec.agents[0].tools[0].t.limited": ["rateLimit", "concurrency", "timeout", "retries", "failureThreshold",
                                          "cooldown"],
    "spec.scheduling": ["defaultWeight", "defaultMaxConcurrent", "priorityAging", "window", "releaseTimeout"],
    "spec.scheduling.tenants.acme": ["weight", "maxConcurrent"],
    "spec.policy": ["maxTokensPerRun", "maxCostPerRun"],
    "spec.schedules[0]": ["cron", "timeZone", "input", "concurrencyPolicy", "startingDeadline"],
}


@st.composite
def fields_set(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """A valid manifest with one to three of ``SET_FIELDS`` set to anything; the paths set."""
    places: dict[str, dict[str, Any]] = {path: {} for path in SET_FIELDS}
    places["spec.schedules[0]"].update(name="nightly", cron="0 2 * * *")
    spec = {"agents": [{"name": "a", "tools": [{"t.limited": places["spec.agents[0].tools[0].t.limited"]}]}],
            "execution": places["spec.execution"], "breakers": places["spec.breakers"],
            "scheduling": {**places["spec.scheduling"], "tenants": {"acme": places["spec.scheduling.tenants.acme"]}},
            "policy": places["spec.policy"], "schedules": [places["spec.schedules[0]"]]}
    chosen = draw(st.lists(st.sampled_from([(path, key) for path, keys in SET_FIELDS.items() for key in keys]),
                           min_size=1, max_size=3, unique=True))
    for path, key in chosen:
        value = draw(SCALARS)
        (spec["scheduling"] if path == "spec.scheduling" else places[path])[key] = value
    document = {"apiVersion": "taskplane.dev/v1", "kind": "AgentSystem", "metadata": {"name": "fuzz"}, "spec": spec}
    return document, {f"{path}.{key}" for path, key in chosen}


def _dumped(document: object) -> str:
    try:
        return yaml.safe_dump(document, allow_unicode=True)
    except (yaml.YAMLError, ValueError, RecursionError):  # nothing PyYAML can write
        return "{}"


@FUZZ
@given(manifests())
def test_any_values_anywhere_are_a_manifest_or_a_refusal_with_places(document: object) -> None:
    refused_or_valid(load_manifest_text, _dumped(document))


@settings(FUZZ, max_examples=150)
@given(fields_set())
def test_any_value_of_a_field_is_refused_at_that_field_or_applies(case: tuple[dict[str, Any], set[str]]) -> None:
    document, paths = case
    error = refused_or_valid(load_manifest_text, _dumped(document))
    if error is None:
        applies(load_manifest_text(_dumped(document)))
    else:
        assert {p.path for p in error.problems} <= paths | {"spec.execution.maxBackoffCap"}, (error, paths)


def applies(manifest: AgentSystemManifest) -> None:
    """What ``taskplane apply`` does with a valid manifest, short of the broker: its summary,
    and its plan and schedules encoded (a value that validated used to fail here, exit 1)."""
    render_plan_summary(manifest)
    plan_summary(manifest)
    plan = manifest.to_plan(manifest_version(manifest))
    serde, meta = Serde(), new_meta("fuzz", "x", 0)
    serde.encode(SystemDefinition(plan.name, plan.version, plan, manifest.canonical_json()), meta)
    serde.encode(ApplySchedules(plan.name, plan.version, plan, tuple(s.to_spec() for s in manifest.spec.schedules)),
                 meta)


@FUZZ
@given(st.text(alphabet=st.sampled_from("[]{}:,-&*!|>'\"#%@` \n\tab1.<"), max_size=200))
def test_any_yaml_punctuation_is_a_manifest_or_a_refusal_with_places(text: str) -> None:
    refused_or_valid(load_manifest_text, HEAD + text)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_are_a_manifest_or_a_refusal_with_places(data: bytes) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".yaml") as file:
        file.write(HEAD.encode() + data)
        file.flush()
        refused_or_valid(load_manifest_file, Path(file.name))


@settings(FUZZ, max_examples=25)
@given(st.integers(2, 300), st.data())
def test_random_long_graphs_never_crash_the_checks(count: int, data: st.DataObject) -> None:
    deps = {i: data.draw(st.lists(st.integers(0, count), max_size=2)) for i in range(count)}
    agents = [{"name": f"a{i}", "dependencies": [f"a{d}" for d in ds]} for i, ds in deps.items()]
    document = {"apiVersion": "taskplane.dev/v1", "kind": "AgentSystem", "metadata": {"name": "g"},
                "spec": {"agents": agents}}
    if refused_or_valid(validate_manifest, document) is None:
        assert _plan_problem(validate_manifest(document).to_plan("v")) is None


# ------------------------------------------------------------------ the CLI


def test_the_cli_exits_0_or_2_without_a_traceback_on_the_worst(tmp_path: Path) -> None:
    cases = {name: WORST[name] for name in ("chain of 1500 agents", "nesting 10000 deep", "billion laughs")}
    files = {}
    for index, (name, text) in enumerate(cases.items()):
        files[name] = tmp_path / f"case{index}.yaml"
        files[name].write_text(text)
    files["not UTF-8"] = tmp_path / "bytes.yaml"
    files["not UTF-8"].write_bytes(HEAD.encode() + b"spec: {agents: [{name: \xc3\x28}]}\n")
    running = {name: subprocess.Popen([sys.executable, "-m", "taskplane.cli", "validate", "-f", str(path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, path in files.items()}  # at once: each start-up is most of its time
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        assert "Traceback" not in err and "Error:" not in err.split("\n")[-1], (name, err[-2000:])
        if name == "chain of 1500 agents":
            assert process.returncode == 0, err[-2000:]
        else:
            assert process.returncode == 2, (name, err[-2000:])
            assert "refused" in err or "error: --file" in err, (name, err[-2000:])
            assert "line " in err or "spec" in err or "<manifest>" in err, (name, err[-2000:])

