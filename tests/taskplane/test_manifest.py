"""The AgentSystem manifest: the seeds' YAML as written, defaults, and every refusal."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.contract.errors import TaskplaneError
from taskplane.contract.plan import (
    AgentPlan,
    ExecutionPolicy,
    Isolation,
    SystemPlan,
    ToolPlan,
)
from taskplane.durations import DurationError, format_duration, parse_duration_ms
from taskplane.exceptions import ManifestError, UserInputError
from taskplane.manifest import (
    AgentSystemManifest,
    load_manifest,
    manifest_version,
    validate_manifest,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# The seeds' snippets, verbatim ("How to Run Multi-Agent Systems Without Losing Sleep").
SEED_EMAIL = """\
apiVersion: orloj.dev/v1
kind: AgentSystem
metadata:
  name: email-processor
spec:
  agents:
    - name: classifier
      model: gpt-4
      tools:
        - email.fetch
        - email.classify
  execution:
    leaseTimeout: 10s
    maxRetries: 3
"""
SEED_PAYMENT = """\
spec:
  agents:
    - name: payment-processor
      model: gpt-4-turbo
      tools:
        - stripe.charge
        - ledger.record
  execution:
    idempotencyTracking: true
"""
SEED_ISOLATION = """\
spec:
  agents:
    - name: researcher
      tools:
        - web.search:
            timeout: 5s
            retries: 2
            isolation: container
        - email.send:
            timeout: 30s
            isolation: wasm
"""
SEED_DEAD_LETTER = """\
spec:
  execution:
    maxRetries: 3
    backoffMultiplier: 2
    maxBackoffCap: 300s
    deadLetterTransition: true
"""
SEED_DOCUMENT_PIPELINE = """\
apiVersion: orloj.dev/v1
kind: AgentSystem
metadata:
  name: document-pipeline
spec:
  agents:
    - name: parser
      model: gpt-4-vision
      tools:
        - document.extract
    - name: validator
      model: gpt-4
      tools:
        - schema.validate
      dependencies:
        - parser
    - name: summarizer
      model: gpt-4
      tools:
        - text.summarize
      dependencies:
        - parser
    - name: publisher
      model: gpt-4
      tools:
        - database.store
      dependencies:
        - validator
        - summarizer
"""
SEED_BACKOFF = """\
spec:
  execution:
    maxRetries: 5
    backoffMultiplier: 2.0
    initialBackoff: 1s
    maxBackoffCap: 60s
    jitterFraction: 0.1
"""
SEED_OBSERVABILITY = """\
spec:
  observability:
    metricsExport: prometheus
    leaseRenewalMetrics: true
    taskStateChangeMetrics: true
    deadLetterAlerts: true
"""
SEED_PERSISTENCE = """\
spec:
  persistence:
    backend: postgresql
    connectionString: postgres://...
    backupSchedule: daily
  execution:
    statePersistence: true
"""
HEADER = "apiVersion: orloj.dev/v1\nkind: AgentSystem\nmetadata:\n  name: seed\n"
ONE_AGENT = "  agents:\n    - name: solo\n"


def complete(fragment: str) -> str:
    """A seed fragment (just ``spec:``) made a whole manifest, its own lines untouched."""
    text = fragment if fragment.startswith("apiVersion") else HEADER + fragment
    if "agents:" not in text:
        text = text.replace("spec:\n", "spec:\n" + ONE_AGENT, 1)
    return text


def problems_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(text)
    return caught.value.lines()


def manifest(spec: str) -> str:
    return HEADER + "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")


SEEDS = [
    SEED_EMAIL,
    SEED_PAYMENT,
    SEED_ISOLATION,
    SEED_DEAD_LETTER,
    SEED_DOCUMENT_PIPELINE,
    SEED_BACKOFF,
    SEED_OBSERVABILITY,
    SEED_PERSISTENCE,
]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_seed_snippet_is_accepted_as_written(seed: str) -> None:
    assert isinstance(load_manifest(complete(seed)), AgentSystemManifest)


def test_seed_values_are_read() -> None:
    email = load_manifest(SEED_EMAIL)
    assert email.name == "email-processor"
    assert [t.name for t in email.spec.agents[0].tools] == ["email.fetch", "email.classify"]
    assert email.spec.agents[0].model == "gpt-4"

    research = load_manifest(complete(SEED_ISOLATION)).spec.agents[0].tools
    assert (research[0].timeout, research[0].retries, research[0].isolation) == (
        5_000,
        2,
        Isolation.CONTAINER,
    )
    assert (research[1].timeout, research[1].retries, research[1].isolation) == (
        30_000,
        0,
        Isolation.WASM,
    )

    dead_letter = load_manifest(complete(SEED_DEAD_LETTER)).spec.execution
    assert (dead_letter.backoff_multiplier, dead_letter.max_backoff_cap) == (2.0, 300_000)

    persistence = load_manifest(complete(SEED_PERSISTENCE)).spec.persistence
    assert persistence.connection_string is not None
    assert persistence.connection_string.get_secret_value() == "postgres://..."
    assert "postgres://" not in repr(persistence) and "postgres://" not in str(persistence)
    assert persistence.backup_schedule == "daily"


def test_defaults_match_the_seeds() -> None:
    spec = load_manifest(complete(SEED_PAYMENT)).spec
    execution = spec.execution
    assert execution.lease_timeout == 10_000
    assert execution.max_retries == 3
    assert execution.initial_backoff == 1_000
    assert execution.backoff_multiplier == 2.0
    assert execution.max_backoff_cap == 60_000
    assert execution.jitter_fraction == 0.1
    assert execution.dead_letter_transition and execution.idempotency_tracking
    assert execution.state_persistence
    assert (spec.breakers.failure_threshold, spec.breakers.cooldown) == (5, 60_000)
    assert spec.observability.metrics_export == "prometheus"
    assert spec.observability.lease_renewal_metrics
    assert spec.observability.task_state_change_metrics and spec.observability.dead_letter_alerts
    assert spec.persistence.backend == "postgresql" and spec.persistence.connection_string is None
    tool = spec.agents[0].tools[0]
    assert (tool.timeout, tool.retries, tool.isolation, tool.fallback, tool.network) == (
        30_000,
        0,
        Isolation.NONE,
        None,
        False,
    )


def test_taskplane_api_version_and_long_form_tool_options() -> None:
    text = manifest("""\
        agents:
          - name: researcher
            tools:
              - web.search: {timeout: 250ms, retries: 1, isolation: container, network: true,
                             fallback: web.cached, failureThreshold: 2, cooldown: 1.5s}
              - web.cached:
              - name: flat.form
                timeout: 1m
        """).replace("orloj.dev/v1", "taskplane.dev/v1")
    tools = load_manifest(text).spec.agents[0].tools
    search = tools[0]
    assert (search.timeout, search.fallback, search.failure_threshold, search.cooldown) == (
        250,
        "web.cached",
        2,
        1_500,
    )
    assert search.network
    assert tools[1].name == "web.cached" and tools[2].timeout == 60_000


def test_example_manifests_are_valid() -> None:
    names = {load_manifest(path).name for path in EXAMPLES.glob("*/system.yaml")}
    assert {"document-pipeline", "payment-processor", "researcher"} <= names


def test_to_plan_compiles_with_breaker_overrides_and_ms() -> None:
    text = manifest("""\
        agents:
          - name: fetch
            model: gpt-4
            tools:
              - web.search: {timeout: 5s, retries: 2, isolation: process, fallback: cache,
                             failureThreshold: 2, cooldown: 10s}
              - cache
          - name: write
            dependencies: [fetch]
        execution: {leaseTimeout: 30s, maxRetries: 5, initialBackoff: 500ms, maxBackoffCap: 1m}
        breakers: {failureThreshold: 7, cooldown: 2m}
        """)
    plan = load_manifest(text).to_plan("v1")
    assert plan == SystemPlan(
        name="seed",
        version="v1",
        agents=(
            AgentPlan(
                name="fetch",
                model="gpt-4",
                tools=(
                    ToolPlan("web.search", 5_000, 2, Isolation.PROCESS, 2, 10_000, "cache"),
                    ToolPlan("cache", 30_000, 0, Isolation.NONE, 7, 120_000, None),
                ),
                dependencies=(),
            ),
            AgentPlan(name="write", model=None, tools=(), dependencies=("fetch",)),
        ),
        execution=ExecutionPolicy(
            lease_timeout_ms=30_000,
            max_retries=5,
            initial_backoff_ms=500,
            max_backoff_ms=60_000,
        ),
    )
    assert plan.downstream("fetch") == ("write",)


def test_topological_order_keeps_declaration_order_among_ready_agents() -> None:
    text = manifest("""\
        agents:
          - {name: publisher, dependencies: [validator, summarizer]}
          - {name: validator, dependencies: [parser]}
          - {name: summarizer, dependencies: [parser]}
          - {name: parser}
        """)
    order = [a.name for a in load_manifest(text).topological_order()]
    assert order == ["parser", "validator", "summarizer", "publisher"]
    document = [a.name for a in load_manifest(SEED_DOCUMENT_PIPELINE).topological_order()]
    assert document == ["parser", "validator", "summarizer", "publisher"]


def test_version_is_by_content_not_spelling() -> None:
    spelled_out = SEED_EMAIL.replace("leaseTimeout: 10s", "leaseTimeout: 10000ms").replace(
        "    maxRetries: 3\n", "    maxRetries: 3\n    jitterFraction: 0.1\n"
    )
    assert manifest_version(SEED_EMAIL) == manifest_version(spelled_out)
    assert manifest_version(SEED_EMAIL) != manifest_version(SEED_EMAIL.replace("3\n", "4\n"))
    assert len(manifest_version(SEED_EMAIL)) == 12
    secret = load_manifest(complete(SEED_PERSISTENCE))
    assert "postgres://" not in secret.canonical_json()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            """\
            agents:
              - name: parser
              - name: validator
                dependencies: [parser]
              - name: publisher
                dependencies: [validatr]
            """,
            "spec.agents[2].dependencies: unknown agent 'validatr' (did you mean 'validator'?)",
        ),
        (
            "agents: [{name: a, dependencies: [a]}]\n",
            "spec.agents[0].dependencies: agent 'a' depends on itself",
        ),
        (
            "agents: [{name: a}, {name: b}, {name: a}]\n",
            "spec.agents[2].name: duplicate agent name 'a' (first at spec.agents[0])",
        ),
        (
            "agents: [{name: a, tools: [web.search, x.y, {web.search: {timeout: 1s}}]}]\n",
            "spec.agents[0].tools[2]: duplicate tool 'web.search'",
        ),
        (
            "agents: [{name: a}]\nexecution: {leaseTimeout: 10 s}\n",
            "spec.execution.leaseTimeout: bad duration '10 s' "
            "(use e.g. 250ms, 10s, 1.5m, 1h, or a number of seconds)",
        ),
        (
            "agents: [{name: a}]\nexecution: {leaseTimeout: 500ms}\n",
            "spec.execution.leaseTimeout: must be at least 1s, got '500ms'",
        ),
        (
            "agents: [{name: a}]\nexecution: {maxRetries: -1}\n",
            "spec.execution.maxRetries: must be >= 0, got -1",
        ),
        (
            "agents: [{name: a}]\nexecution: {jitterFraction: 1.5}\n",
            "spec.execution.jitterFraction: must be <= 1.0, got 1.5",
        ),
        (
            "agents: [{name: a}]\nexecution: {jitterFraction: -0.1}\n",
            "spec.execution.jitterFraction: must be >= 0.0, got -0.1",
        ),
        (
            "agents: [{name: a}]\nexecution: {backoffMultiplier: 0.5}\n",
            "spec.execution.backoffMultiplier: must be >= 1.0, got 0.5",
        ),
        (
            "agents: [{name: a}]\nexecution: {initialBackoff: 10s, maxBackoffCap: 5s}\n",
            "spec.execution.maxBackoffCap: must be at least initialBackoff (10s), got 5s",
        ),
        ("agents: []\n", "spec.agents: at least one agent is required"),
        (
            "agents: [{name: a, tools: [{web.search: {isolation: docker}}]}]\n",
            "spec.agents[0].tools[0].web.search.isolation: unknown isolation 'docker'; "
            "expected 'none', 'process', 'wasm' or 'container'",
        ),
        (
            "agents: [{name: a, tools: [x, {web.search: {timeout: 0s}}]}]\n",
            "spec.agents[0].tools[1].web.search.timeout: must be positive, got '0s'",
        ),
        (
            "agents: [{name: a, tools: [{web.search: {timeout: -5}}]}]\n",
            "spec.agents[0].tools[0].web.search.timeout: must be positive, got -5",
        ),
        (
            "agents: [{name: a, tools: [{web.search: {retries: -1}}]}]\n",
            "spec.agents[0].tools[0].web.search.retries: must be >= 0, got -1",
        ),
        (
            "agents: [{name: a, tools: [{web.search: {network: true}}]}]\n",
            "spec.agents[0].tools[0].web.search.network: "
            "network access needs isolation: container, not none",
        ),
        (
            "agents: [{name: a, tools: [{web.search: {fallback: web.search}}]}]\n",
            "spec.agents[0].tools[0].web.search.fallback: a tool cannot be its own fallback",
        ),
        (
            "agents: [{name: a, tools: [{web.search: {fallback: other}}]}]\n",
            "spec.agents[0].tools[0].web.search.fallback: unknown tool 'other'; "
            "declare the fallback in this agent's tools",
        ),
        (
            "agents: [{name: a, tools: [{web.search: {timout: 5s}}]}]\n",
            "spec.agents[0].tools[0].web.search.timout: unknown field (did you mean timeout?)",
        ),
        (
            "agents: [{name: a}]\nexecution: {leaseTimout: 5s}\n",
            "spec.execution.leaseTimout: unknown field (did you mean leaseTimeout?)",
        ),
        (
            "agents: [{name: a, tools: [{a: 1, b: 2}]}]\n",
            "spec.agents[0].tools[0]: a tool is a name or a one-key mapping {name: {options}}",
        ),
        (
            "agents: [{name: a}]\nbreakers: {failureThreshold: 0}\n",
            "spec.breakers.failureThreshold: must be >= 1, got 0",
        ),
        (
            "agents: [{name: a}]\nexecution: {maxRetries: true}\n",
            "spec.execution.maxRetries: Input should be a valid integer",
        ),
        ("agents: [{name: a}]\nfoo: 1\n", "spec.foo: unknown field"),
        ("{}\n", "spec.agents: required field missing"),
    ],
)
def test_each_problem_names_its_path_and_reason(spec: str, expected: str) -> None:
    assert expected in problems_of(manifest(spec))


def test_header_problems() -> None:
    text = "apiVersion: orloj.dev/v2\nkind: Agent\nmetadata: {name: Bad_Name}\nspec: {}\n"
    assert problems_of(text)[:3] == [
        "apiVersion: unsupported apiVersion 'orloj.dev/v2'; expected taskplane.dev/v1 or "
        "orloj.dev/v1",
        "kind: unsupported value 'Agent'; expected 'AgentSystem'",
        "metadata.name: invalid name 'Bad_Name': lowercase letters, digits and '-', at most 63, "
        "starting and ending with a letter or digit",
    ]
    assert "metadata: required field missing" in problems_of("apiVersion: orloj.dev/v1\n")


def test_all_problems_are_reported_at_once() -> None:
    lines = problems_of(
        manifest("""\
            agents:
              - name: a
                dependencies: [ghost]
                tools: [{t: {timeout: soon}}]
              - name: a
            execution: {maxRetries: -2, jitterFraction: 2}
            """)
    )
    assert lines == [
        "spec.agents[0].tools[0].t.timeout: bad duration 'soon' "
        "(use e.g. 250ms, 10s, 1.5m, 1h, or a number of seconds)",
        "spec.execution.maxRetries: must be >= 0, got -2",
        "spec.execution.jitterFraction: must be <= 1.0, got 2",
        "spec.agents[1].name: duplicate agent name 'a' (first at spec.agents[0])",
        "spec.agents[0].dependencies: unknown agent 'ghost'",
    ]


def test_a_cycle_is_named_by_its_nodes() -> None:
    lines = problems_of(
        manifest("""\
            agents:
              - {name: a, dependencies: [b]}
              - {name: b, dependencies: [c]}
              - {name: c, dependencies: [a]}
              - {name: d, dependencies: [a]}
              - {name: e, dependencies: [f]}
              - {name: f, dependencies: [e]}
            """)
    )
    assert lines == [
        "spec.agents: dependency cycle a -> b -> c -> a",
        "spec.agents: dependency cycle e -> f -> e",
    ]


def test_a_model_built_in_code_is_checked_before_compiling() -> None:
    data = yaml.safe_load(manifest("agents: [{name: a, dependencies: [b]}, {name: b}]\n"))
    data["spec"]["agents"][1]["dependencies"] = ["a"]
    bad = AgentSystemManifest.model_validate(data)  # the pydantic model alone: no graph checks
    with pytest.raises(ManifestError, match="dependency cycle a -> b -> a"):
        bad.to_plan("v")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apiVersion: [\n", "line 2, column 1: invalid YAML:"),
        ("a: b: c\n", "line 1, column 5: invalid YAML: mapping values are not allowed here"),
        ("kind: A\nkind: B\n", "line 2, column 1: invalid YAML: duplicate key 'kind'"),
        ("- a\n- b\n", "<manifest>: a manifest is a mapping with apiVersion, kind, metadata"),
        ("# nothing\n", "<manifest>: a manifest is a mapping"),
    ],
)
def test_yaml_problems_have_line_and_column(text: str, expected: str) -> None:
    assert problems_of(text)[0].startswith(expected)


def test_errors_form_one_tree() -> None:
    error = ManifestError([("spec.agents", "at least one agent is required")])
    assert isinstance(error, UserInputError) and isinstance(error, TaskplaneError)
    assert (error.exit_code, error.field, TaskplaneError.exit_code) == (2, "spec.agents", 1)
    assert str(error) == "spec.agents: at least one agent is required"
    assert error.problems[0].path == "spec.agents"


def test_a_missing_file_names_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(UserInputError, match="nope.yaml") as caught:
        load_manifest(missing)
    assert not isinstance(caught.value, ManifestError)
    with pytest.raises(UserInputError, match="nope.yaml"):
        load_manifest(str(missing))
    good = tmp_path / "ok.yaml"
    good.write_text(SEED_EMAIL)
    assert load_manifest(str(good)).name == "email-processor"


@pytest.mark.parametrize(
    ("text", "ms"),
    [("10s", 10_000), ("300s", 300_000), ("1m", 60_000), ("1.5s", 1_500), ("250ms", 250),
     ("1h", 3_600_000), (30, 30_000), (0.5, 500), ("2", 2_000), ("0", 0)],
)  # fmt: skip
def test_durations(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms
    assert parse_duration_ms(format_duration(ms)) == ms


@pytest.mark.parametrize("text", ["10 s", "s", "1d", "", "ten", True, None, float("inf"), [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(DurationError, match="bad duration"):
        parse_duration_ms(text)


@pytest.mark.parametrize("text", ["9" * 400, "9" * 400 + "h", 1e308, -1e308, 10**400, "99999999999999999999h",
                                  "876001h", 876_001 * 3600])
def test_durations_past_100_years_are_refused_not_overflowed(text: object) -> None:
    # 400 digits were float infinity and round() raised OverflowError (validate's traceback);
    # 20 digits passed and failed to encode on apply.
    with pytest.raises(DurationError, match=r"longer than 876000h \(100 years\)"):
        parse_duration_ms(text)
    assert parse_duration_ms("876000h") == 876_000 * 3_600_000


# --- random graphs: DAGs (acyclic by construction) pass, an added back edge is caught ---


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    count = draw(st.integers(min_value=1, max_value=12))
    names = [f"agent-{i}" for i in range(count)]
    deps = {
        name: sorted(draw(st.sets(st.sampled_from(names[:i])))) if i else []
        for i, name in enumerate(names)
    }
    declared = draw(st.permutations(names))
    return list(declared), deps


def dag_text(declared: list[str], deps: dict[str, list[str]]) -> str:
    data = {
        "apiVersion": "taskplane.dev/v1",
        "kind": "AgentSystem",
        "metadata": {"name": "random"},
        "spec": {"agents": [{"name": n, "dependencies": deps[n]} for n in declared]},
    }
    return yaml.safe_dump(data)


@settings(max_examples=150, deadline=None)
@given(dags())
def test_random_dags_validate_and_order_topologically(
    graph: tuple[list[str], dict[str, list[str]]],
) -> None:
    declared, deps = graph
    system = load_manifest(dag_text(declared, deps))
    order = [agent.name for agent in system.topological_order()]
    assert sorted(order) == sorted(declared)
    for name in order:
        assert all(order.index(dep) < order.index(name) for dep in deps[name])
    assert len(system.to_plan("v").agents) == len(declared)


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_random_cycles_are_caught_and_named(
    graph: tuple[list[str], dict[str, list[str]]], data: st.DataObject
) -> None:
    declared, deps = graph
    chains = [(n, d) for n in deps for d in deps[n]]  # n depends on d, so d is upstream
    if not chains:  # no edge to turn around yet: add one
        deps = {**deps, "extra": [declared[0]]}
        declared = [*declared, "extra"]
        chains = [("extra", declared[0])]
    downstream, upstream = data.draw(st.sampled_from(chains))
    deps = {**deps, upstream: [*deps[upstream], downstream]}  # back edge: closes a cycle
    with pytest.raises(ManifestError) as caught:
        validate_manifest(yaml.safe_load(dag_text(declared, deps)))
    cycles = [p.reason for p in caught.value.problems if p.reason.startswith("dependency cycle")]
    assert cycles
    for reason in cycles:
        nodes = reason.removeprefix("dependency cycle ").split(" -> ")
        assert nodes[0] == nodes[-1] and len(nodes) >= 3
        for node, dep in zip(nodes, nodes[1:], strict=False):
            assert dep in deps[node]
