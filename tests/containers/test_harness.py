"""The containers ring's own rules: when it skips, and what it reads from the project."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.containers import harness


def test_ring_skips_with_a_reason_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = harness.skip_reason()
    assert reason is not None
    assert "needs root" in reason


def test_base_image_is_the_dockerfiles_own() -> None:
    # Imported under exactly this name, the Dockerfile builds unchanged from the local root.
    assert harness.dockerfile_base_image() == "docker.io/library/python:3.11-slim-bookworm"


def test_podman_compose_comes_pinned_from_the_dev_extra() -> None:
    requirement = harness.pinned_podman_compose()
    assert requirement.startswith("podman-compose==")
    major, minor = (int(part) for part in requirement.split("==")[1].split(".")[:2])
    assert (major, minor) >= (1, 2)  # Debian's 1.0.3 ignores ipam subnets and internal


class _ComposeLoader(yaml.SafeLoader):  # type: ignore[misc]
    """Reads compose's `!reset` tag (podman-compose >= 1.2, Docker Compose 2.24+)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: ("!reset", node.value))


def test_override_makes_every_network_internal_and_drops_every_port() -> None:
    base = yaml.safe_load((harness.REPO / "docker-compose.yml").read_text())
    override = yaml.load((harness.HERE / "compose.internal.yml").read_text(), _ComposeLoader)
    for name in base["networks"]:
        assert override["networks"][name]["internal"] is True, name
    for name, service in base["services"].items():
        if "ports" in service:
            assert override["services"][name]["ports"] == ("!reset", []), name
    assert set(base["services"]) == set(harness.SERVICES)
