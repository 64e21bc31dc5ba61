"""API keys: random, hashed, role from the stored entry only, compared in constant time."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from rumordb.cli.main import app
from rumordb.live.auth import (
    LOG_INTERVAL_S,
    AuthRefused,
    FailureLimiter,
    Gate,
    KeysFileError,
    KeyStore,
    Role,
    add_key,
    generate_key,
    presented_key,
    read_keys_file,
)
from rumordb.live.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RUMOR_"):
            monkeypatch.delenv(name)


def settings(**fields: object) -> Settings:
    return Settings(**fields)  # type: ignore[arg-type]


def test_generated_keys_are_long_and_distinct() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(key) >= 32 for key in keys)  # 24 bytes urlsafe-base64: 192 bits


def test_role_comes_from_the_matching_entry(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    admin = add_key(keys_file, Role.ADMIN, "ops")
    reader = add_key(keys_file, "reader", "dashboard")
    store = KeyStore.from_settings(settings(keys_file=keys_file))
    assert store.role_for(admin) is Role.ADMIN
    assert store.role_for(reader) is Role.READER
    assert len(store) == 2


@pytest.mark.parametrize("key", ["", "nope", "x" * 10_000, "xxxxxxxx-admin-2099-12-31"])
def test_unknown_keys_grant_nothing(tmp_path: Path, key: str) -> None:
    keys_file = tmp_path / "keys.json"
    add_key(keys_file, Role.ADMIN)
    store = KeyStore.from_settings(settings(keys_file=keys_file, reader_key=generate_key()))
    assert store.role_for(key) is None


def test_a_key_shaped_like_the_prototypes_admin_key_grants_nothing() -> None:
    store = KeyStore.from_settings(settings(admin_key=generate_key()))
    for key in ["xxxxxxxx-admin-2099-12-31", "abcdef12-admin-2099-12-31", "admin"]:
        assert store.role_for(key) is None
        with pytest.raises(AuthRefused):
            Gate(store, FailureLimiter()).check(bearer(key), "10.0.0.1")


def test_environment_keys_are_hashed_at_start() -> None:
    admin, reader = generate_key(), generate_key()
    store = KeyStore.from_settings(settings(admin_key=admin, reader_key=reader))
    assert store.role_for(admin) is Role.ADMIN
    assert store.role_for(reader) is Role.READER
    held = [digest.hex() for digest, _ in store._hashes]
    assert held == [
        hashlib.sha256(admin.encode()).hexdigest(),
        hashlib.sha256(reader.encode()).hexdigest(),
    ]


def test_a_store_without_keys_accepts_nobody() -> None:
    store = KeyStore.from_settings(settings())
    assert len(store) == 0
    assert store.role_for("anything") is None


def test_accepted_keys_are_cached_but_unknown_ones_are_not() -> None:
    admin = generate_key()
    store = KeyStore.from_settings(settings(admin_key=admin))
    for i in range(1000):
        store.role_for(f"junk-{i}")
    assert store.role_for(admin) is Role.ADMIN
    assert store.role_for(admin) is Role.ADMIN
    assert list(store._cache) == [admin]


def test_the_keys_file_holds_no_plaintext_and_is_private(tmp_path: Path) -> None:
    keys_file = tmp_path / "deep" / "keys.json"
    key = add_key(keys_file, Role.ADMIN, "ops")
    text = keys_file.read_text()
    assert key not in text
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    (entry,) = json.loads(text)["keys"]
    assert entry["name"] == "ops" and entry["role"] == "admin"
    assert entry["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert entry["created"].endswith("+00:00")


def test_adding_to_a_world_readable_file_makes_it_private(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text('{"keys": []}')
    keys_file.chmod(0o644)
    add_key(keys_file, Role.READER)
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert [entry.name for entry in read_keys_file(keys_file)] == ["reader-1"]


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    add_key(keys_file, Role.ADMIN, "ops")
    with pytest.raises(KeysFileError, match="already has a key named 'ops'"):
        add_key(keys_file, Role.READER, "ops")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"keys": {}}', "must hold"),
        ('{"keys": [{"role": "root", "sha256": "' + "0" * 64 + '"}]}', "role must be"),
        ('{"keys": [{"role": "admin", "sha256": "xyz"}]}', "sha256 must be"),
        ('{"keys": [1]}', "must be an object"),
    ],
)
def test_malformed_keys_files_are_refused_clearly(
    tmp_path: Path, content: str, message: str
) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(content)
    with pytest.raises(KeysFileError, match=message):
        KeyStore.from_settings(settings(keys_file=keys_file))


def test_a_missing_keys_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="rumor apikey create"):
        KeyStore.from_settings(settings(keys_file=tmp_path / "absent.json"))


# --- headers -------------------------------------------------------------------------
KEY = "k3y-Value_1"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": f"Bearer {KEY}"}, KEY),
        ({"authorization": f"bearer {KEY}"}, KEY),
        ({"Authorization": f"  Bearer   {KEY} "}, KEY),
        ({"X-API-Key": KEY}, KEY),
        ({"x-api-key": f" {KEY} "}, KEY),
        ({}, None),
        ({"X-API-Key": ""}, None),
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": "Bearer "}, None),
        ({"Authorization": f"Basic {KEY}"}, None),
        ({"Authorization": KEY}, None),
        ({"Authorization": f"Bearer {KEY} extra"}, None),
        ({"Authorization": "Basic x", "X-API-Key": KEY}, None),  # malformed wins: no guess
        ({"Authorization": f"Bearer {KEY}", "X-API-Key": KEY}, KEY),  # the same key twice
    ],
)
def test_presented_key_from_headers(headers: dict[str, str], expected: str | None) -> None:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    assert presented_key(raw) == expected
    capitalised = [(name.encode(), value.encode()) for name, value in headers.items()]
    assert presented_key(capitalised) == expected


@pytest.mark.parametrize(
    "raw",
    [
        [(b"authorization", f"Bearer {KEY}".encode())] * 2,
        [(b"authorization", f"Bearer {KEY}".encode()), (b"Authorization", b"Bearer other")],
        [(b"x-api-key", KEY.encode()), (b"x-api-key", b"other")],
        [(b"x-api-key", KEY.encode())] * 2,
        [(b"authorization", f"Bearer {KEY}".encode()), (b"x-api-key", b"other")],
    ],
)
def test_duplicate_or_conflicting_credentials_are_400(raw: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(AuthRefused) as refused:
        presented_key(raw)
    assert refused.value.status == 400 and refused.value.error == "duplicate_credentials"


# --- the gate: one check for every route, failures limited per address ------------------
class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def make_gate(burst: int = 3, refill_per_s: float = 0.5, clients_max: int = 100) -> Gate:
    store = KeyStore([(hashlib.sha256(b"good-key").hexdigest(), Role.ADMIN)])
    return Gate(store, FailureLimiter(burst, refill_per_s, clients_max), clock=Clock())


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + key.encode())]


def refusal(gate: Gate, headers: list[tuple[bytes, bytes]], client: str = "10.0.0.1") -> int:
    with pytest.raises(AuthRefused) as refused:
        gate.check(headers, client)
    return refused.value.status


def test_the_gate_reads_either_header() -> None:
    gate = make_gate()
    assert gate.check(bearer("good-key"), "c") is Role.ADMIN
    assert gate.check([(b"x-api-key", b"good-key")], "c") is Role.ADMIN
    assert refusal(gate, [(b"x-api-key", b"bad-key")]) == 401
    assert refusal(gate, []) == 401


def test_failures_beyond_the_burst_are_429_until_the_bucket_refills() -> None:
    gate = make_gate(burst=3, refill_per_s=0.5)
    clock = gate._clock
    assert isinstance(clock, Clock)
    assert [refusal(gate, bearer("guess")) for _ in range(3)] == [401, 401, 401]
    with pytest.raises(AuthRefused) as throttled:
        gate.check(bearer("good-key"), "10.0.0.1")  # even a good key: the address waits
    assert throttled.value.status == 429
    assert throttled.value.headers == ((b"retry-after", b"2"),)  # 1 token at 0.5/s
    assert gate.check(bearer("good-key"), "10.0.0.2") is Role.ADMIN  # other addresses
    clock.now_s += 2.0
    assert gate.check(bearer("good-key"), "10.0.0.1") is Role.ADMIN
    assert refusal(gate, bearer("guess")) == 401  # the refilled token, spent
    assert refusal(gate, bearer("guess")) == 429


def test_the_per_address_table_is_bounded() -> None:
    gate = make_gate(burst=1, clients_max=100)
    for i in range(1000):
        refusal(gate, bearer("guess"), client=f"10.0.{i // 256}.{i % 256}")
    assert len(gate.limiter) == 100
    assert refusal(gate, bearer("guess"), client="10.0.3.231") == 429  # recent: still held


def test_failures_are_logged_once_per_address_per_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gate = make_gate(burst=1000)
    clock = gate._clock
    assert isinstance(clock, Clock)
    for _ in range(50):
        refusal(gate, bearer("guess"))
    clock.now_s += LOG_INTERVAL_S
    refusal(gate, bearer("guess"))
    lines = [line for line in capsys.readouterr().out.splitlines() if "auth_failed" in line]
    assert len(lines) == 2, lines
    assert "failures=1" in lines[0] and "failures=50" in lines[1]


def test_only_admins_write() -> None:
    assert Role.ADMIN.allows_writes()
    assert not Role.READER.allows_writes()


# --- the CLI -------------------------------------------------------------------------
def test_cli_prints_the_key_once_and_stores_its_hash(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    args = ["apikey", "create", "--role", "reader", "--keys-file", str(keys_file), "--name", "r"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert KeyStore.from_settings(settings(keys_file=keys_file)).role_for(key) is Role.READER
    assert key not in keys_file.read_text()


def test_cli_refuses_an_unknown_role(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    args = ["apikey", "create", "--role", "root", "--keys-file", str(keys_file)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert not keys_file.exists()


class Ring:
    """A keyring stand-in: ``roles`` is what it holds now (a revocation deletes one)."""

    def __init__(self) -> None:
        self.roles = {"ring-key": Role.READER}

    def role_for(self, presented_key: str) -> Role | None:
        return self.roles.get(presented_key)


def test_only_a_bootstrap_key_s_header_is_kept_and_never_for_an_address_that_failed() -> None:
    ring = Ring()
    store = KeyStore([(hashlib.sha256(b"good-key").hexdigest(), Role.ADMIN)])
    gate = Gate(store, FailureLimiter(1, 0.5, 100), clock=Clock(), keyring=ring)
    good, ringed = (b"x-api-key", b"good-key"), (b"authorization", b"Bearer ring-key")
    assert gate.check_credentials(None, good[1], False, "c") is Role.ADMIN
    assert gate.check_credentials(ringed[1], None, False, "c") is Role.READER
    assert gate._static_roles == {good: Role.ADMIN}, "a keyring key is looked up every time"
    del ring.roles["ring-key"]  # revoked: refused at once
    with pytest.raises(AuthRefused) as revoked:
        gate.check_credentials(ringed[1], None, False, "c")
    assert revoked.value.status == 401
    with pytest.raises(AuthRefused) as throttled:  # "c" spent its burst: even the kept key waits
        gate.check_credentials(None, good[1], False, "c")
    assert throttled.value.status == 429
    with pytest.raises(AuthRefused) as both:  # two credentials: never the kept answer
        gate.check_credentials(b"Bearer ring-key", good[1], False, "d")
    assert both.value.status == 400
