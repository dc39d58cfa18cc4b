"""deploy/k8s renders, validates, and says what the code says: env vars exist in settings
classes, required settings are set, topics equal the catalog, scaling bounds equal
partition counts, grace periods outlast the commit and shutdown bounds."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from scripts import gen_deploy
from taskplane.devstack.kafka import _POM, LOG4J_VERSION
from taskplane.processors.projector.app import ProjectorSettings
from taskplane.processors.tracer.app import TracerSettings
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.settings import DEFAULT_KAFKA_VERSION
from taskplane.streams.topics import Topics, catalog
from taskplane.workers.settings import WorkerSettings
from tests.deploy._k8s import (
    KUSTOMIZATIONS,
    ROOT,
    container_env,
    named,
    of_kind,
    render,
    taskplane_containers,
    validate,
)
from tests.deploy._settings import (
    ROLE_SETTINGS,
    missing_required,
    parse_literals,
    role_of,
    unknown_env,
)

OVERLAYS = ("overlays/dev", "overlays/prod")
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_resource_is_valid(kustomization: str) -> None:
    docs = render(kustomization)
    assert docs
    problems = [problem for doc in docs for problem in validate(doc)]
    assert not problems, "\n".join(problems)


def test_the_validator_catches_a_bad_resource() -> None:
    topic = {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": {"name": "t"},
             "spec": {"partitions": "four"}}
    assert any("spec.partitions" in problem for problem in validate(topic))
    misspelt = {**topic, "spec": {"partitions": 4, "replica": 3}}
    assert any("'replica' was unexpected" in problem for problem in validate(misspelt))
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"replicas": "two", "selector": {}, "template": {}}}
    assert validate(deployment)


@pytest.mark.parametrize("kustomization", ("base", *OVERLAYS))
def test_every_env_var_is_a_setting_and_every_required_one_is_set(kustomization: str) -> None:
    docs = render(kustomization)
    containers = taskplane_containers(docs)
    assert {role_of(c) for _, c in containers} == set(ROLE_SETTINGS)
    for workload, container in containers:
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        env = container_env(docs, container)
        role = role_of(container)
        assert not unknown_env(env), f"{where}: env vars no settings class reads: {unknown_env(env)}"
        # the example's tools write to the read-model database
        needs = ("TASKPLANE_DATABASE_URL",) if role == "worker" else ()
        assert not missing_required(role, env, needs), f"{where}: required settings not set"
        parse_literals(role, env)


@pytest.mark.parametrize("kustomization", ("base", *OVERLAYS))
def test_kafka_topics_equal_the_catalog(kustomization: str) -> None:
    docs = render(kustomization)
    prefix = _config(docs)["TASKPLANE_TOPIC_PREFIX"]
    topics = {doc["spec"]["topicName"]: doc["spec"] for doc in of_kind(docs, "KafkaTopic")}
    names = Topics(prefix)
    run_partitions = topics[names.name("commands")]["partitions"]
    tool_partitions = topics[names.name("tool-outcomes")]["partitions"]
    expected = {names.name(spec.role): {"topicName": names.name(spec.role), "partitions": spec.partitions,
                                        "config": dict(spec.config)}
                for spec in catalog(run_partitions, tool_partitions)}
    assert topics == expected
    cluster = named(docs, "Kafka", "taskplane")["metadata"]["name"]
    assert {doc["metadata"]["labels"]["strimzi.io/cluster"] for doc in of_kind(docs, "KafkaTopic")} == {cluster}


@pytest.mark.parametrize("kustomization", ("base", *OVERLAYS))
def test_scaling_follows_partitions(kustomization: str) -> None:
    docs = render(kustomization)
    config = _config(docs)
    partitions = {doc["spec"]["topicName"]: doc["spec"]["partitions"] for doc in of_kind(docs, "KafkaTopic")}
    names = Topics(config["TASKPLANE_TOPIC_PREFIX"])
    assert _replicas(docs, "taskplane-orchestrator") <= partitions[names.name("commands")]
    assert _replicas(docs, "taskplane-breaker") <= partitions[names.name("tool-outcomes")]
    scaled = named(docs, "ScaledObject", "taskplane-worker")
    trigger = scaled["spec"]["triggers"][0]["metadata"]
    worker = named(docs, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    system = args[args.index("--system") + 1]
    assert trigger["topic"] == names.name("work")
    assert trigger["consumerGroup"] == f"{names.prefix}.workers.{system}"  # workers/worker.py's group id
    assert trigger["bootstrapServers"] == config["TASKPLANE_BOOTSTRAP_SERVERS"]
    assert scaled["spec"]["maxReplicaCount"] == partitions[names.name("work")]


@pytest.mark.parametrize("kustomization", ("base", *OVERLAYS))
def test_probes_grace_and_disruption_budgets(kustomization: str) -> None:
    docs = render(kustomization)
    budgets = {tuple(sorted(doc["spec"]["selector"]["matchLabels"].items())) for doc in of_kind(docs, "PodDisruptionBudget")}
    for workload, container in taskplane_containers(docs):
        if workload["kind"] != "Deployment":
            continue
        env = container_env(docs, container)
        pod = workload["spec"]["template"]["spec"]
        port = int(env["TASKPLANE_METRICS_PORT"])
        assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == port
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert "resources" in container and container["resources"]["requests"]
        grace = pod["terminationGracePeriodSeconds"]
        if role_of(container) == "worker":
            bound = float(env.get("TASKPLANE_WORKER_SHUTDOWN_GRACE_S", WorkerSettings.model_fields["shutdown_grace_s"].default))
        elif role_of(container) == "tracer":  # its last batch, then the OTLP export's timeout (10 s by default)
            bound = int(env.get("TASKPLANE_TRACER_MAX_BATCH_MS", TracerSettings.model_fields["max_batch_ms"].default)) / 1000 + 10
        elif role_of(container) == "projector":
            bound = int(env.get("TASKPLANE_PROJECTOR_MAX_BATCH_MS", ProjectorSettings.model_fields["max_batch_ms"].default)) / 1000
        else:
            bound = int(env.get("TASKPLANE_RUNTIME_TRANSACTION_TIMEOUT_MS",
                                RuntimeSettings.model_fields["transaction_timeout_ms"].default)) / 1000
        assert grace > bound, f"{workload['metadata']['name']}: grace {grace}s <= {bound}s"
        assert tuple(sorted(workload["spec"]["selector"]["matchLabels"].items())) in budgets


def test_postgres_in_dev_is_a_statefulset_and_prod_expects_an_external_secret() -> None:
    dev, prod = render("overlays/dev"), render("overlays/prod")
    postgres = named(dev, "StatefulSet", "taskplane-postgres")
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert any(doc["metadata"]["name"].startswith("taskplane-database") for doc in of_kind(dev, "Secret"))
    assert not of_kind(prod, "StatefulSet") and not of_kind(prod, "Secret")
    projector = named(prod, "Deployment", "taskplane-projector")["spec"]["template"]["spec"]["containers"][0]
    assert container_env(prod, projector)["TASKPLANE_DATABASE_URL"] == {
        "secretKeyRef": {"name": "taskplane-database", "key": "url"}}


@pytest.mark.parametrize("kustomization", ("base", *OVERLAYS))
def test_only_the_orchestrator_holds_the_approval_key(kustomization: str) -> None:
    docs = render(kustomization)
    holders = {role_of(c) for _, c in taskplane_containers(docs) if "TASKPLANE_APPROVAL_KEY" in container_env(docs, c)}
    assert holders == {"orchestrator"}, "a worker with the key could sign its own approvals"
    orchestrator = named(docs, "Deployment", "taskplane-orchestrator")["spec"]["template"]["spec"]["containers"][0]
    assert container_env(docs, orchestrator)["TASKPLANE_APPROVAL_KEY"] == {
        "secretKeyRef": {"name": "taskplane-approvals", "key": "key", "optional": True}}


def test_generated_files_are_current() -> None:
    stale = [str(path.relative_to(ROOT)) for path, text in gen_deploy.rendered().items()
             if not path.exists() or path.read_text() != text]
    assert not stale, f"run python scripts/gen_deploy.py: {stale}"


def test_prometheus_rule_carries_the_alert_rules() -> None:
    rule = named(render("base"), "PrometheusRule", "taskplane")
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]


def test_dashboard_shows_every_alert_and_only_documented_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "k8s" / "base" / "grafana" / "taskplane.json").read_text())
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())
    described = " ".join(panel.get("description", "") for panel in dashboard["panels"])
    missing = [rule["alert"] for group in alerts["groups"] for rule in group["rules"] if rule["alert"] not in described]
    assert not missing, f"alerts without a dashboard panel: {missing}"
    documented = (ROOT / "docs" / "metrics.md").read_text()
    used = {re.sub(r"_(total|bucket|count|sum)$", "", name)
            for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"taskplane_[a-z_]+", target["expr"])}
    undocumented = sorted(name for name in used if name not in documented)
    assert not undocumented, f"dashboard metrics not in docs/metrics.md: {undocumented}"


def test_the_kafka_image_uses_the_local_stacks_jars() -> None:
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    assert pom == _POM.format(kafka=DEFAULT_KAFKA_VERSION, log4j=LOG4J_VERSION)


def _config(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    return next(doc["data"] for doc in of_kind(docs, "ConfigMap") if doc["metadata"]["name"].startswith("taskplane-config"))


def _replicas(docs: tuple[dict[str, Any], ...], name: str) -> int:
    return int(named(docs, "Deployment", name)["spec"]["replicas"])
