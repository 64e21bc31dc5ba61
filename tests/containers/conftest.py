"""Fixtures of the containers ring (see ``harness`` for what it installs and why)."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers.harness import (
    BUILD_ARGS,
    CONTAINERS_CONF,
    NODE_PORT,
    SBIN_PATH,
    SERVICES,
    ComposeCluster,
    bridge_address,
    compose_command,
    ensure_base_image,
    ensure_packages,
    image_id,
    project_containers,
    remove_everything,
    run,
    secrets_from_files_reason,
    skip_reason,
    wait_healthy,
    write_secret_files,
)


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}:{SBIN_PATH}"
    ensure_packages(env)
    ensure_base_image(env)
    return env


@pytest.fixture(scope="module")
def compose_cluster(
    podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeCluster]:
    reason = secrets_from_files_reason()
    if reason:
        pytest.skip(reason)
    project = f"rumortest{secrets.token_hex(3)}"
    secrets_dir = tmp_path_factory.mktemp("secrets")
    values = write_secret_files(secrets_dir)
    admin_key, reader_key = values["admin-key"], values["reader-key"]
    env = {**podman_env, "RUMOR_SECRETS_DIR": str(secrets_dir), "RUMOR_SHARDING": "false"}
    compose = compose_command(env, project)
    try:
        # One build: the three services share the image, and podman-compose would build
        # it once per service, in parallel. `up` then finds the image and builds nothing.
        previous = image_id(env)
        run([*compose, "--podman-build-args", BUILD_ARGS, "build", SERVICES[0]], env, 1200)
        if previous and previous != image_id(env):  # the old build is now a dangling copy
            run(["podman", "rmi", previous], env, 120, check=False)
        run([*compose, "up", "-d"], env, 300)
        containers = project_containers(env, project)
        assert sorted(containers) == list(SERVICES), containers
        wait_healthy(env, containers)
        urls = {
            f"n{i}": f"http://{bridge_address(env, containers[service])}:{NODE_PORT}"
            for i, service in enumerate(SERVICES, start=1)
        }
        yield ComposeCluster(project, env, compose, urls, admin_key, reader_key)
    finally:
        remove_everything(env, compose, project)
