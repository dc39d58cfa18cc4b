"""deploy/k8s/secure/users.yaml: one Strimzi KafkaUser per role, with exactly the ACLs
the dev stack's --secure cluster enforces (taskplane.streams.roles), and current."""

from __future__ import annotations

import yaml

from scripts import gen_deploy
from taskplane.streams.roles import ROLES

USERS = gen_deploy.K8S / "secure" / "users.yaml"


def test_the_file_is_what_the_roles_generate() -> None:
    assert USERS.read_text() == gen_deploy.rendered()[USERS], "run python scripts/gen_deploy.py"


def test_one_scram_user_per_role_and_a_worker_writes_no_fact() -> None:
    users = {doc["metadata"]["name"]: doc["spec"] for doc in yaml.safe_load_all(USERS.read_text())}
    assert set(users) == {f"taskplane-{role}" for role in ROLES}
    assert all(spec["authentication"]["type"] == "scram-sha-512" for spec in users.values())

    def allowed(role: str, operation: str) -> set[str]:
        return {acl["resource"]["name"] for acl in users[f"taskplane-{role}"]["authorization"]["acls"]
                if acl["resource"]["type"] == "topic" and operation in acl["operations"]}

    assert allowed("orchestrator", "Write") >= {"taskplane.events", "taskplane.work"}
    assert "taskplane.events" not in allowed("worker", "Write")
    # tool-outcomes: AcquirePermit, the tool governor's input (docs/scheduling.md)
    assert allowed("worker", "Write") == {"taskplane.commands", "taskplane.tool-outcomes", "taskplane.poison"}
    assert all(name.startswith("taskplane.") for role in ROLES for name in allowed(role, "Read"))
