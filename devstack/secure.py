"""A locked-down local cluster: SASL/SCRAM-SHA-512 over TLS for clients and between
brokers, the StandardAuthorizer with ACLs per role (streams/roles.py), one SCRAM user
per role.

- TLS: a CA and a broker certificate for 127.0.0.1/localhost made with ``openssl`` once
  and cached (``<cache>/devstack/tls``); brokers load them as PEM stores.
- The brokers' own user (``admin``, the only super user) is written into the metadata
  log at format time (``kafka-storage format --add-scram``): brokers must authenticate
  to each other before any admin API answers. The controller listener is
  SASL_PLAINTEXT with PLAIN on loopback: KRaft controllers cannot check SCRAM (their
  credentials live in the very log they serve).
- Role users and ACLs come through the admin API once the cluster is up.
- Clients configure through ``TASKPLANE_KAFKA_*``: ``env_for(role)`` gives the lines,
  written per role to ``<cache>/devstack/secure/<role>.env``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from taskplane.devstack.kafka import ClusterNode, LocalStackError, MissingToolError
from taskplane.streams.roles import ROLES, Grant, role_grants
from taskplane.streams.topics import Topics

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class SecureFiles:
    ca: Path  # the CA certificate clients trust (ssl.ca.location)
    keystore: Path  # the broker's key and certificate, PEM
    credentials: Path  # {"admin": ..., "<role>": ...} passwords, mode 0600

    def passwords(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads(self.credentials.read_text())
        return loaded


def _openssl(*args: str, cwd: Path) -> None:
    try:
        result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise MissingToolError("openssl not found: install it (Debian/Ubuntu: apt-get install openssl)") from None
    if result.returncode != 0:
        raise LocalStackError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")


def secure_files(directory: Path) -> SecureFiles:
    """The CA, the broker keystore and the role passwords under ``directory``; made on
    first use and kept, so a restarted secure stack keeps its clients' settings."""
    tls = directory / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    files = SecureFiles(tls / "ca.pem", tls / "broker.pem", directory / "credentials.json")
    if not files.keystore.exists():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                 "-days", "3650", "-subj", "/CN=taskplane dev CA", cwd=tls)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
                 "-subj", "/CN=localhost", cwd=tls)
        (tls / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", "broker.crt", "-days", "825", "-extfile", "san.ext", cwd=tls)
        # A PEM keystore: the PKCS#8 key (openssl's default) followed by its certificate.
        files.keystore.write_text((tls / "broker.key").read_text() + (tls / "broker.crt").read_text())
        os.chmod(files.keystore, 0o600)
    if not files.credentials.exists():
        passwords = {name: secrets.token_urlsafe(18) for name in (ADMIN, *ROLES)}
        files.credentials.touch(mode=0o600)
        files.credentials.write_text(json.dumps(passwords, indent=2))
    return files


def secured(files: SecureFiles) -> Any:
    """The LocalKafkaCluster ``customize`` hook: a node's listeners and security."""
    password = files.passwords()[ADMIN]
    scram_login = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                   f'username="{ADMIN}" password="{password}";')
    plain_login = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
                   f'username="{ADMIN}" password="{password}" user_{ADMIN}="{password}";')

    def customize(node: ClusterNode, port: int) -> ClusterNode:
        controller = node.controller_port
        overrides = {
            "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram_login,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain_login,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(files.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(files.ca),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN}",
            "allow.everyone.if.no.acl.found": "false",
        }
        return replace(
            node, overrides={**node.overrides, **overrides},
            format_args=(*node.format_args, "--add-scram", f"{MECHANISM}=[name={ADMIN},password={password}]"),
            client_config=client_config(files, ADMIN),
        )  # fmt: skip

    return customize


def client_config(files: SecureFiles, user: str) -> dict[str, str]:
    """librdkafka settings of ``user`` (``admin`` or a role)."""
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.username": user,
        "sasl.password": files.passwords()[user],
        "ssl.ca.location": str(files.ca),
    }


def env_for(files: SecureFiles, user: str) -> dict[str, str]:
    """``client_config`` as the TASKPLANE_KAFKA_* variables every component reads."""
    return {f"TASKPLANE_KAFKA_{key.upper().replace('.', '_')}": value
            for key, value in client_config(files, user).items()}


def create_principals(admin_config: dict[str, Any], files: SecureFiles, topics: Topics,
                      timeout_s: float = 30.0) -> None:
    """A SCRAM user per role and the role's ACLs under ``topics``' prefix (idempotent:
    both calls upsert)."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    from taskplane.streams import kafka_clients

    admin = kafka_clients.admin(admin_config)
    passwords = files.passwords()
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts = [UserScramCredentialUpsertion(role, info, passwords[role].encode()) for role in ROLES]
    for future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).values():
        future.result()
    bindings = [_binding(role, grant, op) for role in ROLES for grant in role_grants(role, topics)
                for op in grant.operations]
    for future in admin.create_acls(bindings, request_timeout=timeout_s).values():
        future.result()
    _await_login(admin_config, files, ROLES[0], timeout_s)


def _await_login(admin_config: dict[str, Any], files: SecureFiles, user: str, timeout_s: float) -> None:
    """Wait until ``user`` can log in: a new SCRAM credential reaches the brokers
    through the metadata log, a moment after the upsert returned."""
    from taskplane.streams import kafka_clients

    deadline = time.monotonic() + timeout_s
    while True:
        probe = kafka_clients.admin({**admin_config, **client_config(files, user), "log_level": 0})
        try:
            probe.list_topics(timeout=2.0)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise LocalStackError(f"{user} cannot log in {timeout_s:.0f}s after its creation") from None
            time.sleep(0.3)


def write_env_files(files: SecureFiles, directory: Path) -> list[Path]:
    """``<user>.env`` per role and for the admin: ``set -a; . worker.env`` configures a
    shell's taskplane commands as that principal."""
    written = []
    for user in (ADMIN, *ROLES):
        path = directory / f"{user}.env"
        path.touch(mode=0o600)
        path.write_text("".join(f"{key}={value}\n" for key, value in env_for(files, user).items()))
        written.append(path)
    return written


def _binding(role: str, grant: Grant, operation: str) -> Any:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactionalId": ResourceType.TRANSACTIONAL_ID}
    operations = {"Read": AclOperation.READ, "Write": AclOperation.WRITE, "Create": AclOperation.CREATE,
                  "Describe": AclOperation.DESCRIBE, "DescribeConfigs": AclOperation.DESCRIBE_CONFIGS}
    pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
    return AclBinding(kinds[grant.kind], grant.name, pattern, f"User:{role}", "*",
                      operations[operation], AclPermissionType.ALLOW)
