"""The CLI's own decisions, without a cluster: partitions, `why` verdicts, URLs, credentials."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import click
import pytest

from rumordb.cli import chaos, connect, credentials, diagnose, output
from rumordb.cli.diagnose import NodeVersion as Version
from rumordb.cli.output import ExitCode

NODES = {"n1": "http://a", "n2": "http://b", "n3": "http://c", "n4": "http://d"}


def meta(clock: dict[str, int], hlc: int, origin: str, **extra: Any) -> dict[str, Any]:
    return {
        "clock": clock,
        "hlc": hlc,
        "origin": origin,
        "tombstone": False,
        "value_sha256": f"{origin}{hlc}".ljust(64, "0"),
        "content_type": "text/plain",
        "discarded": None,
        **extra,
    }


def exit_code_of(call: Any, *args: Any) -> int:
    with pytest.raises(click.exceptions.Exit) as raised:
        call(*args)
    return raised.value.exit_code


def test_unnamed_nodes_form_the_last_side_of_a_partition() -> None:
    assert chaos.partition_groups(["n1"], NODES) == [["n1"], ["n2", "n3", "n4"]]
    assert chaos.partition_groups(["n1,n2", "n3,n4"], NODES) == [["n1", "n2"], ["n3", "n4"]]


def test_partition_rejects_repeats_unknown_nodes_and_a_single_side() -> None:
    assert exit_code_of(chaos.partition_groups, ["n1", "n1,n2"], NODES) == ExitCode.USAGE
    assert exit_code_of(chaos.partition_groups, ["n1", "n9"], NODES) == ExitCode.USAGE
    assert exit_code_of(chaos.partition_groups, ["n1,n2,n3,n4"], NODES) == ExitCode.USAGE


def test_descendant_wins_whatever_the_hlc_says() -> None:
    older = Version("n1", "http://a", meta({"n1": 1}, hlc=900, origin="n1"))
    newer = Version("n2", "http://b", meta({"n1": 1, "n2": 1}, hlc=100, origin="n2"))
    winner, beaten = diagnose.pick_winner([older, newer])
    assert winner is newer
    assert beaten == [{"node": "n1", "rule": "descendant", "version": diagnose.label(older.meta)}]


def test_concurrent_versions_are_decided_by_hlc_then_origin() -> None:
    left = Version("n1", "http://a", meta({"n1": 1}, hlc=500, origin="n1"))
    right = Version("n3", "http://c", meta({"n3": 1}, hlc=500, origin="n3"))
    winner, beaten = diagnose.pick_winner([right, left])
    assert winner is right  # same HLC: the larger origin breaks the tie
    assert [item["rule"] for item in beaten] == ["lww"]
    text = diagnose.explain([left, right], winner, beaten, None)
    assert "nodes disagree" in text and "(HLC, origin)" in text


def test_the_last_conflict_is_the_latest_discarded_version() -> None:
    old_loss = {"value_sha256": "a" * 64, "clock": {"n1": 1}, "hlc": 10, "origin": "n1",
                "tombstone": False}  # fmt: skip
    new_loss = {**old_loss, "hlc": 20, "origin": "n2"}
    versions = [
        Version("n1", "http://a", meta({"n3": 2}, 30, "n3", discarded=old_loss)),
        Version("n2", "http://b", meta({"n3": 2}, 30, "n3", discarded=new_loss)),
        Version("n3", "http://c", meta({"n3": 2}, 30, "n3")),
    ]
    conflict = diagnose.last_conflict(versions)
    assert conflict == {"rule": "lww", "discarded": new_loss, "nodes": ["n2"]}
    assert diagnose.last_conflict(versions[2:]) is None


def test_urls_may_be_repeated_or_comma_separated(tmp_path: Path) -> None:
    assert connect.split_urls(["http://a:1,http://b:2/", "http://c:3"]) == [
        "http://a:1",
        "http://b:2",
        "http://c:3",
    ]
    assert connect.resolve_urls(None, tmp_path) == [connect.DEFAULT_URL]
    assert exit_code_of(connect.split_urls, ["a:1"]) == ExitCode.USAGE


def test_the_default_urls_are_the_nodes_of_the_cluster_in_dir(tmp_path: Path) -> None:
    nodes = [{"url": "http://127.0.0.1:9001"}, {"url": "http://127.0.0.1:9002"}]
    (tmp_path / "cluster.json").write_text(json.dumps({"nodes": nodes}))
    assert connect.resolve_urls((), tmp_path) == ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
    assert connect.resolve_urls(("http://x:1",), tmp_path) == ["http://x:1"]


def test_faults_are_described_in_words() -> None:
    assert chaos.describe_faults({"block_to": ["n2"], "block_from": ["n2"]}) == "cut off from n2"
    assert chaos.describe_faults({"delay_ms": 200, "loss": 0.3}) == "delay 200 ms; loss 30 %"
    assert chaos.describe_faults({"block_to": [], "loss": 0.0}) == "none (healthy)"


def test_client_errors_map_to_exit_codes() -> None:
    from rumordb import errors

    def code(status: int) -> ExitCode:
        return output.exit_code_for(errors.error_from(status, b"{}", {}, "n"))

    assert [code(s) for s in (404, 409, 412, 401, 403, 400, 413, 414, 503, 500)] == [
        ExitCode.NOT_FOUND, ExitCode.CONFLICT, ExitCode.CONFLICT, ExitCode.AUTH, ExitCode.AUTH,
        ExitCode.USAGE, ExitCode.USAGE, ExitCode.USAGE, ExitCode.UNREACHABLE, ExitCode.UNREACHABLE,
    ]  # fmt: skip
    assert output.exit_code_for(errors.Unreachable("x")) == ExitCode.UNREACHABLE


def test_credentials_are_created_private_and_reused(tmp_path: Path) -> None:
    made, created = credentials.load_or_create(tmp_path / "c")
    path = credentials.credentials_path(tmp_path / "c")
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o700
    low, high = credentials.DISCOVERY_PORT_RANGE
    assert low <= made.discovery_port <= high
    again, created_again = credentials.load_or_create(tmp_path / "c")
    assert (again, created_again) == (made, False)


def test_credentials_readable_by_others_are_refused(tmp_path: Path) -> None:
    made, _ = credentials.load_or_create(tmp_path)
    path = credentials.credentials_path(tmp_path)
    path.chmod(0o644)
    with pytest.raises(credentials.CredentialsError, match="chmod 600"):
        credentials.load(path)
    path.chmod(0o600)
    path.write_text(json.dumps({"admin_key": "x"}))
    with pytest.raises(credentials.CredentialsError, match="not a RumorDB credentials file"):
        credentials.load(path)
    assert made.node_env()["RUMOR_CLUSTER_SECRET"] == made.cluster_secret
