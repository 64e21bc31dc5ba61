"""The node's settings are validated whole when built."""

import pytest

from rumordb.core.config import NodeConfig


@pytest.mark.parametrize(
    "name", ["fanout", "gossip_interval_ms", "replicas", "max_key_bytes", "maintenance_batch"]
)
def test_counts_and_intervals_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        NodeConfig(**{name: 0})  # type: ignore[arg-type]


def test_the_defaults_are_valid() -> None:
    assert NodeConfig().fanout == 3 and NodeConfig().dead_timeout_ms is None
