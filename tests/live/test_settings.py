"""Settings: flags and RUMOR_* variables, checked once, with messages that name both."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from rumordb.core.node import NodeConfig
from rumordb.live.settings import (
    SECRET_NAMES,
    ConfigError,
    Settings,
    load_or_create_node_id,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RUMOR_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_contract() -> None:
    s = Settings()
    assert (s.host, s.port, s.durability, s.broadcast, s.discovery_port) == (
        "127.0.0.1",
        8001,
        "sync",
        "auto",
        7946,
    )
    assert s.seeds == [] and s.node_id is None and s.cluster_secret is None
    assert s.data_dir == Path(".rumor/node")


def test_environment_variables_fill_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUMOR_PORT", "9100")
    monkeypatch.setenv("RUMOR_ANTI_ENTROPY_INTERVAL_MS", "250")
    monkeypatch.setenv("RUMOR_SHARDING", "true")
    monkeypatch.setenv("RUMOR_DURABILITY", "batch")
    s = Settings()
    assert (s.port, s.anti_entropy_interval_ms, s.sharding, s.durability) == (
        9100,
        250,
        True,
        "batch",
    )


def test_flags_win_over_the_environment_and_none_means_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUMOR_PORT", "9100")
    monkeypatch.setenv("RUMOR_REPLICAS", "5")
    s = load_settings(port=9200, replicas=None)
    assert (s.port, s.replicas) == (9200, 5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "http://127.0.0.2:8001,http://127.0.0.3:8001",
            ["http://127.0.0.2:8001", "http://127.0.0.3:8001"],
        ),
        (" 127.0.0.2:8001 , ", ["http://127.0.0.2:8001"]),
        ('["http://127.0.0.2:8001/"]', ["http://127.0.0.2:8001"]),
        ("", []),
    ],
)
def test_seeds_from_a_comma_list_or_json(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("RUMOR_SEEDS", raw)
    assert Settings().seeds == expected
    assert load_settings(seeds=raw).seeds == expected


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"port": 0}, "--port / RUMOR_PORT"),
        ({"port": 65536}, "--port / RUMOR_PORT"),
        ({"discovery_port": 70000}, "--discovery-port / RUMOR_DISCOVERY_PORT"),
        ({"replicas": 0}, "--replicas / RUMOR_REPLICAS"),
        ({"fanout": 0}, "--fanout / RUMOR_FANOUT"),
        ({"max_value_bytes": 0}, "--max-value-bytes / RUMOR_MAX_VALUE_BYTES"),
        ({"max_key_bytes": -1}, "--max-key-bytes / RUMOR_MAX_KEY_BYTES"),
        ({"gossip_interval_ms": 0}, "--gossip-interval-ms"),
        ({"durability": "fast"}, "'sync', 'batch' or 'memory'"),
        ({"broadcast": "everyone"}, "'auto', 'off' or an IPv4 address"),
        ({"seeds": "ftp://127.0.0.2"}, "only http:// and https://"),
        ({"seeds": "[1, "}, "not a JSON list"),
        ({"advertise_url": "http://"}, "no host"),
        ({"node_id": "has space"}, "--node-id / RUMOR_NODE_ID"),
        ({"log_level": "loud"}, "--log-level"),
        ({"host": " "}, "--host"),
    ],
)
def test_bad_values_are_refused_with_the_flag_and_variable(
    overrides: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match="invalid settings") as caught:
        load_settings(**overrides)
    assert needle in str(caught.value)


def test_secrets_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(cluster_secret="   ", port=0)
    assert "--cluster-secret / RUMOR_CLUSTER_SECRET" in str(caught.value)
    assert "'   '" not in str(caught.value)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="--no-such-flag"):
        load_settings(no_such_flag=1)


def test_missing_cluster_secret_says_how_to_set_one() -> None:
    with pytest.raises(ConfigError, match="RUMOR_CLUSTER_SECRET"):
        Settings().require_cluster_secret()
    strong = "s3cret-" + "Q7x9kLm2Pz4Rt8Vw1Yb5Nc"
    assert Settings(cluster_secret=strong).require_cluster_secret() == strong


def test_log_level_is_case_insensitive() -> None:
    assert load_settings(log_level="WARNING").log_level == "warning"


def test_node_config_carries_the_protocol_settings() -> None:
    s = load_settings(
        fanout=5,
        gossip_interval_ms=50,
        anti_entropy_interval_ms=400,
        probe_interval_ms=300,
        suspicion_mult=2,
        retransmit_mult=6,
        sharding=True,
        replicas=2,
        max_key_bytes=64,
    )
    config = s.node_config()
    assert isinstance(config, NodeConfig)
    assert (config.fanout, config.gossip_interval_ms, config.anti_entropy_interval_ms) == (
        5,
        50,
        400,
    )
    assert (config.probe_interval_ms, config.suspicion_mult, config.retransmit_mult) == (300, 2, 6)
    assert (config.sharding, config.replicas, config.max_key_bytes) == (True, 2, 64)


def test_the_clock_skew_bound_has_a_default_a_variable_and_reaches_the_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().node_config().max_clock_skew_ms == 5_000 == NodeConfig().max_clock_skew_ms
    monkeypatch.setenv("RUMOR_MAX_CLOCK_SKEW_MS", "750")
    assert Settings().node_config().max_clock_skew_ms == 750
    with pytest.raises(ValueError):
        Settings(max_clock_skew_ms=0)


def test_advertised_url() -> None:
    assert load_settings(host="127.0.0.3", port=8003).advertised_url() == "http://127.0.0.3:8003"
    given = load_settings(advertise_url="http://node3:8001/")
    assert given.advertised_url() == "http://node3:8001"


def test_node_id_is_generated_once_and_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "n1"
    first = load_or_create_node_id(data_dir)
    assert first.startswith("node-") and len(first) == len("node-") + 8
    assert load_or_create_node_id(data_dir) == first
    assert (data_dir / "node_id").read_text().strip() == first
    assert load_or_create_node_id(tmp_path / "n2") != first


def test_a_corrupt_node_id_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "node_id").write_text("not/valid\n")
    with pytest.raises(ConfigError, match="invalid node id"):
        load_or_create_node_id(tmp_path)


# --- secrets: strength, files ---------------------------------------------------------
STRONG = "Zq8-Hk3_Lp0wXv7Rt2Yn5Bm"  # 23 url-safe characters: more than 128 bits written out


@pytest.mark.parametrize(
    "weak",
    [
        "a",
        "x",
        "change-me-cluster-secret",
        "CHANGE-ME-and-then-some-more-text",
        "secret",
        "password",
        "short-but-not-hex-21c",  # 21 characters
        "0123456789abcdef0123456789abcde",  # 31 hex digits: under 128 bits
        "ab" * 20,  # long, but two distinct characters
    ],
)
@pytest.mark.parametrize("field", ["cluster_secret", "cluster_secret_previous", "admin_key"])
def test_weak_or_placeholder_secrets_are_refused_naming_the_setting(field: str, weak: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**{field: weak})
    message = str(caught.value)
    assert f"--{field.replace('_', '-')} / RUMOR_{field.upper()}" in message
    assert len(weak) < 8 or weak not in message  # never echoed, not even a weak one


@pytest.mark.parametrize(
    "strong",
    [STRONG, secrets.token_urlsafe(16), secrets.token_hex(16), secrets.token_urlsafe(32)],
)
def test_secrets_of_128_bits_or_more_are_accepted(strong: str) -> None:
    assert load_settings(reader_key=strong).reader_key == strong


def test_every_secret_can_come_from_a_file_minus_one_trailing_newline(tmp_path: Path) -> None:
    values = {name: secrets.token_urlsafe(24) for name in SECRET_NAMES}
    given = {}
    for name, value in values.items():
        path = tmp_path / name
        path.write_text(value + "\n")
        given[name + "_file"] = path
    loaded = load_settings(**given)
    assert {name: getattr(loaded, name) for name in SECRET_NAMES} == values


def test_secret_files_come_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secret"
    path.write_text(STRONG + "\n\n")  # only one newline is stripped: the rest is the secret
    monkeypatch.setenv("RUMOR_CLUSTER_SECRET_FILE", str(path))
    assert load_settings().cluster_secret == STRONG + "\n"


def test_a_missing_unreadable_or_empty_secret_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--admin-key-file / RUMOR_ADMIN_KEY_FILE: cannot read"):
        load_settings(admin_key_file=tmp_path / "absent")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(admin_key_file=tmp_path)  # a directory
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"RUMOR_READER_KEY_FILE: .* is empty"):
        load_settings(reader_key_file=empty)


def test_a_value_and_a_file_for_one_secret_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(STRONG)
    with pytest.raises(ConfigError, match=r"RUMOR_CLUSTER_SECRET and .*_FILE are both set"):
        load_settings(cluster_secret=STRONG, cluster_secret_file=path)


def test_a_weak_secret_in_a_file_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("change-me-please-and-more\n")
    with pytest.raises(ConfigError, match=r"RUMOR_CLUSTER_SECRET .*_FILE.*placeholder"):
        load_settings(cluster_secret_file=path)
