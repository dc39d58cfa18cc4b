"""podman as these machines run it (/work/shared/CONTAINERS.md, docs/deploy.md): the runc
runtime with cgroupfs, explicit ulimits, a base image bootstrapped from Debian's packages
(no registry to pull from). The image is tagged by a hash of what goes into it, so a
session builds it only when the Dockerfile or the package changed."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.deploy._k8s import ROOT, unavailable

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
BASE = "localhost/debian:bookworm"
IMAGE_INPUTS = ("deploy/Dockerfile", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md",
                "native", "schemas", "contract", "streams", "devstack", "processors", "workers",
                "taskplane")


def podman(*args: str, timeout: float = 120, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=stdin is None, timeout=timeout,
                            input=stdin)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({result.returncode}):\n{result.stderr}")
    return result  # type: ignore[return-value]


def require_podman() -> None:
    if shutil.which("podman") is None or shutil.which("runc") is None:
        unavailable("podman/runc not installed: `make .venv/.installed` installs them as root "
                    "(apt-get install podman buildah runc debootstrap)")


def ensure_base() -> None:
    """``localhost/debian:bookworm`` from debootstrap (minbase), once per machine."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        unavailable(f"no base image {BASE} and no way to bootstrap one (debootstrap, as root)")
    with tempfile.TemporaryDirectory(prefix="taskplane-rootfs-", dir="/var/tmp") as work:
        rootfs = Path(work, "rootfs")
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs)], check=True,
                       capture_output=True, timeout=1200)
        import_base(rootfs)


SLIM_DPKG = """# Like debian:bookworm-slim: packages installed later skip docs, man pages, locales.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""


def import_base(rootfs: Path) -> None:
    """Slim a debootstrapped tree the way debian:*-slim is (no .deb cache, package lists,
    docs, man pages or locales) and import it as BASE."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc/*",
                    "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink()
    (rootfs / "etc" / "dpkg" / "dpkg.cfg.d" / "slim").write_text(SLIM_DPKG)
    tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], check=True, capture_output=True, timeout=600)
    podman("import", "-", BASE, stdin=tar.stdout, timeout=600)


def image_tag() -> str:
    digest = hashlib.sha256()
    for name in IMAGE_INPUTS:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so")
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return f"localhost/taskplane:test-{digest.hexdigest()[:16]}"


def ensure_image() -> str:
    """Build the taskplane image on the bootstrapped base unless this exact one exists."""
    tag = image_tag()
    if podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    ensure_base()
    podman("build", *ULIMITS, "--network", "host", "--build-arg", f"BASE={BASE}", *_host_trust(), "-t", tag,
           "-f", str(ROOT / "deploy" / "Dockerfile"), str(ROOT), timeout=3600)
    _remove_older(tag)
    return tag


def _remove_older(tag: str) -> None:
    """Drop the test images of earlier inputs, so a machine keeps one per repository."""
    repository = tag.rsplit(":", 1)[0]
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repository, check=False).stdout.split()
    for old in listed:
        if old != tag and old.startswith(f"{repository}:test-"):
            podman("rmi", old, check=False)


def _host_trust() -> list[str]:
    """pip inside the build trusts what pip on this host trusts (a proxy's CA here)."""
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if not bundle or not Path(bundle).is_file():
        return []
    return ["--volume", f"{bundle}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]


def ensure_kafka_image() -> str:
    """Build the stand-in Kafka image (deploy/kafka) on the same base unless it exists."""
    folder = ROOT / "deploy" / "kafka"
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()))
    tag = f"localhost/taskplane-kafka:test-{digest.hexdigest()[:16]}"
    if podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    ensure_base()
    trust = []
    truststore = Path("/etc/ssl/certs/java/cacerts")  # Maven trusts what this host's Java trusts
    if truststore.is_file():
        trust = ["--volume", f"{truststore}:/run/host-cacerts:ro",
                 "--build-arg", "MAVEN_OPTS=-Djavax.net.ssl.trustStore=/run/host-cacerts"]
    podman("build", *ULIMITS, "--network", "host", "--build-arg", f"BASE={BASE}", *trust, "-t", tag,
           str(folder), timeout=3600)
    _remove_older(tag)
    return tag


def image_size_mb(tag: str) -> float:
    size = podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
    return int(size) / 1e6


class Container:
    """One detached container on the host network; logs kept until removed."""

    def __init__(self, image: str, name: str, args: list[str], env: dict[str, str],
                 volumes: dict[Path, str] | None = None) -> None:
        self.name = name
        command = ["run", "-d", *ULIMITS, "--network", "host", "--name", name]
        for key, value in env.items():
            command += ["-e", f"{key}={value}"]
        for host, spec in (volumes or {}).items():
            command += ["-v", f"{host}:{spec}"]
        podman(*command, image, *args)

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return f"{result.stdout}{result.stderr}"

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout.strip()
        return state == "true"

    def signal(self, name: str) -> None:
        podman("kill", "--signal", name, self.name)

    def wait(self, timeout: float = 120) -> int:
        return int(podman("wait", self.name, timeout=timeout).stdout.strip().splitlines()[-1])

    def remove(self) -> None:
        podman("rm", "-f", "-t", "5", self.name, check=False, timeout=60)
