"""The promises of the deployment files, checked on every machine (no Podman needed).

The container ring runs these files for real, but only as root; these checks keep the
properties users rely on from drifting anywhere the suite runs: client ports only on
127.0.0.1, discovery without a peer list, fault injection only with the override file,
secrets only as files, a read-only root filesystem, a per-host file that passes every
setting, and a non-root image with a health check. The Kubernetes manifest has its own
tests in ``tests/deploy``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from rumordb.live.settings import Settings

REPO = Path(__file__).resolve().parents[2]


SECRET_VARIABLES = {
    "RUMOR_CLUSTER_SECRET": "cluster_secret",
    "RUMOR_ADMIN_KEY": "admin_key",
    "RUMOR_READER_KEY": "reader_key",
}


def yaml_file(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
    return document


def compose() -> dict[str, Any]:
    return yaml_file("docker-compose.yml")


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


def test_compose_nodes_discover_by_broadcast_with_faults_only_in_the_override() -> None:
    for name, service in compose()["services"].items():
        command = " ".join(service["command"])
        assert "--seeds" not in command, f"{name}: discovery, not a peer list"
        assert "--allow-faults" not in command, f"{name}: faults are for the override only"
        assert "RUMOR_SEEDS" not in service["environment"], name
        assert "RUMOR_ALLOW_FAULTS" not in service["environment"], name
    override = yaml_file("docker-compose.faults.yml")["services"]
    assert override.keys() == compose()["services"].keys()
    for service in override.values():
        assert service == {"environment": {"RUMOR_ALLOW_FAULTS": "true"}}


def test_compose_secrets_are_files_and_sharding_is_a_switch() -> None:
    document = compose()
    declared = document["secrets"]
    for name, secret in declared.items():
        assert set(secret) == {"file"}, name
        assert secret["file"].startswith("${RUMOR_SECRETS_DIR:-./secrets}/"), name
    for service in document["services"].values():
        env = service["environment"]
        assert set(service["secrets"]) == set(declared)
        for variable, secret in SECRET_VARIABLES.items():
            assert variable not in env, f"{variable}: a file, not an environment value"
            assert env[variable + "_FILE"] == f"/run/secrets/{secret}"
        assert env["RUMOR_SHARDING"].startswith("${RUMOR_SHARDING")
    ignored = (REPO / ".gitignore").read_text().split()
    assert "secrets/" in ignored and "secrets" in (REPO / ".dockerignore").read_text().split()


def test_compose_root_filesystem_is_read_only_with_a_tmpfs() -> None:
    for name, service in compose()["services"].items():
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name


def test_env_example_placeholders_are_obvious_and_every_name_is_a_setting() -> None:
    example = dotenv(REPO / ".env.example")
    for variable in SECRET_VARIABLES:
        assert example[variable].startswith("change-me-"), variable  # refused at start
    known = {"RUMOR_" + field.upper() for field in Settings.model_fields}
    compose_only = {"RUMOR_SECRETS_DIR", "RUMOR_ENV_FILE"} | {
        f"RUMOR_NODE{i}_PORT" for i in (1, 2, 3)
    }
    assert example.keys() - compose_only <= known


def test_per_host_compose_passes_every_setting_of_the_node() -> None:
    """Every ``RUMOR_*`` variable of ``Settings`` set in the host's .env reaches the node.

    Compose semantics for the service's environment: the ``env_file`` entries, then the
    ``environment`` mapping over them. The values written to the .env must survive, except
    the data directory, which the image fixes to its volume.
    """
    service = yaml_file("deploy/compose-per-host.yml")["services"]["node"]
    (entry,) = service["env_file"]
    assert entry["path"] == "${RUMOR_ENV_FILE:-../.env}" and entry["required"] is False
    fixed = {"RUMOR_DATA_DIR": "/data"}
    written = {"RUMOR_" + field.upper(): f"value-{field}" for field in Settings.model_fields}
    container = {**written}
    for name, value in service["environment"].items():
        container[name] = interpolate(str(value), written)
    for variable, value in written.items():
        assert container[variable] == fixed.get(variable, value), variable
    assert "--broadcast" in service["command"]  # the image's `auto` would fail across hosts


def interpolate(text: str, env: dict[str, str]) -> str:
    """``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` as compose expands them."""

    def expand(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator == ":?":
            raise AssertionError(f"{name} is required: {rest}")
        return rest or ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", expand, text)


def dotenv(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {name.strip(): value.strip() for name, value in pairs}


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
