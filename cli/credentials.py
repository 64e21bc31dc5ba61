"""The credentials of a local cluster: one JSON file, mode 600, made once and reused.

``rumor cluster up`` creates ``DIR/credentials`` on first use and every later command
(the cluster's nodes, ``rumor put`` and friends) reads it, so a user never types a key on
a laptop cluster. The file holds the cluster secret (HMAC for gossip and discovery), one
admin and one reader API key, and the UDP discovery port. The port is chosen at random
when the file is made, so two local clusters on one machine never hear each other's
announcements and merge (their secrets differ too, but then each would log rejections).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import random

CREDENTIALS_NAME = "credentials"
DEFAULT_DIR = Path(".rumor")
DISCOVERY_PORT_RANGE = (20_000, 32_000)  # below Linux's ephemeral range (32768..)
PORT_ATTEMPTS = 64


class CredentialsError(Exception):
    """The credentials file exists but cannot be used (unreadable, malformed, too open)."""


class Credentials(NamedTuple):  # not a dataclass: cheaper to define at every start
    cluster_secret: str
    admin_key: str
    reader_key: str
    discovery_port: int

    def node_env(self) -> dict[str, str]:
        """Secrets go to nodes through the environment: command lines are world-readable."""
        return {
            "RUMOR_CLUSTER_SECRET": self.cluster_secret,
            "RUMOR_ADMIN_KEY": self.admin_key,
            "RUMOR_READER_KEY": self.reader_key,
        }


def credentials_path(cluster_dir: Path) -> Path:
    return cluster_dir / CREDENTIALS_NAME


def free_udp_port(rng: random.Random | None = None) -> int:
    """A UDP port nothing is bound to now, from a range the kernel does not hand out."""
    import random
    import socket

    chooser = rng or random.SystemRandom()
    for _ in range(PORT_ATTEMPTS):
        port = chooser.randint(*DISCOVERY_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise CredentialsError(f"no free UDP port found in {PORT_ATTEMPTS} attempts")


def load(path: Path) -> Credentials:
    try:
        mode = path.stat().st_mode & 0o777
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"cannot read {path}: {exc}") from exc
    if mode & 0o077:
        raise CredentialsError(
            f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
        )
    try:
        credentials = Credentials(
            cluster_secret=str(raw["cluster_secret"]),
            admin_key=str(raw["admin_key"]),
            reader_key=str(raw["reader_key"]),
            discovery_port=int(raw["discovery_port"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CredentialsError(f"{path} is not a RumorDB credentials file: {exc}") from exc
    if not 1 <= credentials.discovery_port <= 65535:
        raise CredentialsError(f"{path}: discovery_port must be 1..65535")
    return credentials


def create(path: Path) -> Credentials:
    """Write fresh credentials with mode 600 from the start (no window where they are open)."""
    import secrets

    from rumordb.live.auth import generate_key  # imports the node's settings: only here

    credentials = Credentials(
        cluster_secret=secrets.token_urlsafe(32),
        admin_key=generate_key(),  # the same generator as `rumor apikey create`
        reader_key=generate_key(),
        discovery_port=free_udp_port(),
    )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(credentials._asdict(), indent=2) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load(path)  # another command made it first: use theirs
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    return credentials


def load_or_create(cluster_dir: Path) -> tuple[Credentials, bool]:
    """The cluster's credentials, and whether they were made just now."""
    path = credentials_path(cluster_dir)
    if path.exists():
        return load(path), False
    return create(path), True


def admin_key_from(cluster_dir: Path) -> str | None:
    """The admin key of the local cluster in ``cluster_dir``, if there is one."""
    path = credentials_path(cluster_dir)
    if not path.exists():
        return None
    return load(path).admin_key
