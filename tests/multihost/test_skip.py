"""Where namespaces cannot be made, the ring is skipped with a reason, not failed."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.multihost import netns


def test_not_root_gives_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = netns.unavailable_reason()
    assert reason is not None and "root" in reason


def test_missing_ip_command_gives_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = netns.unavailable_reason()
    assert reason is not None and "iproute2" in reason
