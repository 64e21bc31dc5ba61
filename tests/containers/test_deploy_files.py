"""The promises of the deployment files, checked on every machine (no Podman needed).

The container ring runs these files for real, but only as root; these checks keep the
properties users rely on from drifting anywhere the suite runs: client ports only on
127.0.0.1, discovery without a peer list, secrets only from the environment, a non-root
image with a health check. The Kubernetes manifest has its own tests in ``tests/deploy``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return document


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split()[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_compose_runs_three_nodes_on_their_own_subnet() -> None:
    document = compose()
    services = document["services"]
    assert len(services) >= 3
    network = document["networks"]["rumor"]
    assert network["driver"] == "bridge"
    assert network["ipam"]["config"][0]["subnet"]
    for service in services.values():
        assert service["networks"] == ["rumor"]


def test_compose_nodes_discover_by_broadcast_with_faults_enabled() -> None:
    for name, service in compose()["services"].items():
        command = " ".join(service["command"])
        assert "--seeds" not in command, f"{name}: discovery, not a peer list"
        assert "--allow-faults" in command, name
        assert "RUMOR_SEEDS" not in service["environment"], name


def test_compose_secrets_come_from_env_and_sharding_is_a_switch() -> None:
    for service in compose()["services"].values():
        env = service["environment"]
        for secret in ("RUMOR_CLUSTER_SECRET", "RUMOR_ADMIN_KEY", "RUMOR_READER_KEY"):
            assert re.fullmatch(r"\$\{" + secret + r":\?.+\}", env[secret]), secret
        assert env["RUMOR_SHARDING"].startswith("${RUMOR_SHARDING")
    example = (REPO / ".env.example").read_text()
    for name in ("RUMOR_CLUSTER_SECRET", "RUMOR_ADMIN_KEY", "RUMOR_READER_KEY", "RUMOR_SHARDING"):
        assert re.search(rf"^{name}=", example, re.MULTILINE), name


def test_compose_publishes_client_ports_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_compose_nodes_have_healthchecks_and_named_volumes() -> None:
    document = compose()
    for name, service in document["services"].items():
        assert "/health" in " ".join(service["healthcheck"]["test"]), name
        volume = service["volumes"][0].split(":")[0]
        assert volume in document["volumes"], f"{name}: {volume} is not a named volume"


def test_image_is_slim_python_non_root_with_health_check() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim-bookworm")
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(op == "HEALTHCHECK" and "/health" in arg for op, arg in instructions)
    entrypoint = next(arg for op, arg in instructions if op == "ENTRYPOINT")
    assert entrypoint == '["rumor", "node", "--host", "0.0.0.0", "--broadcast", "auto"]'
    installs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "python3 -m venv" in installs
    assert "[dev]" not in installs and "optional-dependencies" not in installs


def test_dockerignore_keeps_secrets_and_the_venv_out_of_the_image() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".rumor", ".git"} <= ignored
