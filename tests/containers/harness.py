"""The containers ring: the real Dockerfile and docker-compose.yml, run by Podman.

There is no Docker engine and no image registry here, so the ring brings what it needs
(root only): Debian's podman, runc and debootstrap; podman-compose from PyPI (Debian's
1.0.3 ignores ``ipam`` subnets and ``internal``); and the Dockerfile's base image, built
once by debootstrap and cached, then imported under the Dockerfile's own base image name
so the Dockerfile builds unchanged. Podman runs with a ``CONTAINERS_CONF`` suited to this
sandbox (no setrlimit, runc instead of crun).

SAFETY: the compose file is started together with ``compose.internal.yml``, which makes
every network ``internal: true`` (no route out) and drops the published ports; the tests
talk to the nodes only at their bridge addresses. Everything the ring creates
(containers, networks, volumes, pod) is removed by a finalizer, also on failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# The faults override: the ring partitions the cluster with `rumor chaos`.
COMPOSE_FILES = (
    REPO / "docker-compose.yml",
    REPO / "docker-compose.faults.yml",
    HERE / "compose.internal.yml",
)
SECRET_FILES = ("cluster-secret", "admin-key", "reader-key")
CACHE_DIR = Path(os.environ.get("RUMOR_CONTAINERS_CACHE", "/var/cache/rumordb"))
BASE_TARBALL = CACHE_DIR / "bookworm-python3.tar.gz"
BUILD_ARGS = "--network host -v /etc/ssl/certs:/etc/ssl/certs:ro"
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SERVICES = ("node1", "node2", "node3")
NODE_PORT = 8001
HEALTHY_WAIT_S = 120.0


def secrets_from_files_reason() -> str | None:
    """Why the node cannot run docker-compose.yml yet: it must read RUMOR_*_FILE secrets."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "cluster-secret"
        secret = secrets.token_urlsafe(32)
        path.write_text(secret + "\n", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUMOR_")}
        env["RUMOR_CLUSTER_SECRET_FILE"] = str(path)
        probe = (
            "from rumordb.live.settings import load_settings; "
            "print(load_settings().require_cluster_secret())"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
        )
    if result.returncode == 0 and result.stdout.strip() == secret:
        return None
    return "containers ring: this node does not read RUMOR_CLUSTER_SECRET_FILE (compose secrets)"


def write_secret_files(directory: Path) -> dict[str, str]:
    """Fresh random compose secrets, readable by the container's user; name -> value."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    values = {}
    for name in SECRET_FILES:
        values[name] = secrets.token_urlsafe(32)
        (directory / name).write_text(values[name], encoding="utf-8")  # no newline
        (directory / name).chmod(0o644)
    return values


def skip_reason() -> str | None:
    if sys.platform != "linux":
        return "containers ring: Linux only (Podman)"
    if os.geteuid() != 0:
        return (
            "containers ring: needs root to install podman/runc/debootstrap and run rootful "
            "Podman (CI runs as root)"
        )
    if shutil.which("apt-get") is None and shutil.which("podman") is None:
        return "containers ring: needs Debian's apt-get to install podman"
    return None


def run(
    argv: list[str], env: dict[str, str], timeout_s: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
    return result


# ---------------------------------------------------------------------------- tools


def pinned_podman_compose() -> str:
    """The podman-compose requirement pinned in pyproject's dev extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    for requirement in project["project"]["optional-dependencies"]["dev"]:
        if requirement.replace(" ", "").startswith("podman-compose"):
            return str(requirement)
    return "podman-compose>=1.2"


def ensure_packages(env: dict[str, str]) -> None:
    tools = ("podman", "runc", "debootstrap")
    if all(shutil.which(tool, path=SBIN_PATH) for tool in tools):
        return
    apt_env = {**env, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *tools]
    if run(install, apt_env, 900, check=False).returncode != 0:
        run(["apt-get", "update", "-q"], apt_env, 600)  # the package lists were stale or empty
        run(install, apt_env, 900)


def ensure_podman_compose(env: dict[str, str]) -> list[str]:
    try:
        major, minor = (int(part) for part in metadata.version("podman-compose").split(".")[:2])
        current = (major, minor) >= (1, 2)
    except metadata.PackageNotFoundError:
        current = False
    if not current:
        run([sys.executable, "-m", "pip", "install", "-q", pinned_podman_compose()], env, 600)
    script = Path(sys.executable).with_name("podman-compose")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import podman_compose, sys; sys.exit(podman_compose.main())"]


def dockerfile_base_image() -> str:
    """The Dockerfile's FROM image, fully qualified the way Podman stores it."""
    for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.upper().startswith("FROM "):
            name = line.split()[1]
            if "/" not in name:
                name = f"docker.io/library/{name}"
            return name
    raise AssertionError("Dockerfile has no FROM line")


def ensure_base_image(env: dict[str, str]) -> None:
    """Import the cached debootstrap root under the base image's name (built once)."""
    name = dockerfile_base_image()
    if run(["podman", "image", "exists", name], env, 60, check=False).returncode == 0:
        return
    if not BASE_TARBALL.exists():
        build_base_tarball(env)
    run(["podman", "import", "--change", 'CMD ["python3"]', str(BASE_TARBALL), name], env, 600)


def build_base_tarball(env: dict[str, str]) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    root = CACHE_DIR / "rootfs.partial"
    shutil.rmtree(root, ignore_errors=True)
    try:
        run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm",
             str(root)],
            env,
            1200,
        )  # fmt: skip
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / cache, ignore_errors=True)
        partial = BASE_TARBALL.with_suffix(".partial")
        run(["tar", "-C", str(root), "-czf", str(partial), "."], env, 600)
        partial.replace(BASE_TARBALL)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class ComposeCluster:
    project: str
    env: dict[str, str]
    compose: list[str]
    urls: dict[str, str]  # node id (n1..) -> http://<bridge address>:8001
    admin_key: str
    reader_key: str

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.Client(headers=headers, timeout=5.0, trust_env=False)

    def rumor(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The real CLI against the containers (admin key from the environment)."""
        rumor = str(Path(sys.executable).with_name("rumor"))
        env = {**self.env, "RUMOR_API_KEY": self.admin_key}
        return run([rumor, *args], env, 60, check=check)


def compose_command(env: dict[str, str], project: str) -> list[str]:
    command = [*ensure_podman_compose(env), "-p", project]
    for path in COMPOSE_FILES:
        command += ["-f", str(path)]
    return command


def project_containers(env: dict[str, str], project: str) -> dict[str, str]:
    """compose service -> container name."""
    listing = run(
        ["podman", "ps", "-a", "--format", "json", "--filter",
         f"label=io.podman.compose.project={project}"],
        env,
        60,
    )  # fmt: skip
    found = {}
    for container in json.loads(listing.stdout or "[]"):
        service = container.get("Labels", {}).get("com.docker.compose.service")
        if service:
            found[service] = container["Names"][0]
    return found


def image_id(env: dict[str, str]) -> str | None:
    """The id of the image the compose file names, if it was built before."""
    compose = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    name = next(
        line.split()[1] for line in compose.splitlines() if line.strip().startswith("image:")
    )
    result = run(["podman", "image", "inspect", "--format", "{{.Id}}", name], env, 60, check=False)
    return result.stdout.strip() or None


def bridge_address(env: dict[str, str], container: str) -> str:
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    output = run(["podman", "inspect", "--format", template, container], env, 60).stdout
    addresses = output.split()
    assert len(addresses) == 1, f"{container} should be on exactly one network: {addresses}"
    return addresses[0]


def remove_everything(env: dict[str, str], compose: list[str], project: str) -> None:
    """`down -v`, then remove whatever is left with the project's label."""
    run([*compose, "down", "-v", "-t", "5"], env, 300, check=False)
    label = f"label=io.podman.compose.project={project}"
    for kind, listing in (
        ("container", ["podman", "ps", "-aq", "--filter", label]),
        ("network", ["podman", "network", "ls", "-q", "--filter", label]),
        ("volume", ["podman", "volume", "ls", "-q", "--filter", label]),
    ):
        leftovers = run(listing, env, 60, check=False).stdout.split()
        if leftovers:
            remove = ["podman", kind, "rm", "-f"] + (["-t", "0"] if kind == "container" else [])
            run([*remove, *leftovers], env, 120, check=False)
    run(["podman", "pod", "rm", "-f", "--ignore", f"pod_{project}"], env, 60, check=False)


def wait_healthy(env: dict[str, str], containers: dict[str, str]) -> None:
    """Run each container's HEALTHCHECK until all pass (no systemd timers run it here)."""
    deadline = time.monotonic() + HEALTHY_WAIT_S
    pending = set(containers.values())
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            if run(["podman", "healthcheck", "run", name], env, 60, check=False).returncode == 0:
                pending.discard(name)
        if pending:
            time.sleep(1.0)
    if pending:
        logs = {name: run(["podman", "logs", name], env, 60, check=False) for name in pending}
        details = "\n".join(
            f"--- {n}\n{r.stdout[-1500:]}{r.stderr[-1500:]}" for n, r in logs.items()
        )
        raise AssertionError(f"containers not healthy after {HEALTHY_WAIT_S:.0f} s:\n{details}")
