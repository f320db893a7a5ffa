"""Deployment decisions that need no cluster: where the gateway binds, nothing running."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfleet.serving import deploy
from mlfleet.serving.auth import digest
from mlfleet.settings import get_settings

KEYS = [{"name": "k", "sha256": digest("secret"), "scopes": ["predict"]}]


def test_without_keys_the_gateway_binds_localhost_and_says_so(tmp_path: Path) -> None:
    notes: list[str] = []
    wide = get_settings(home=tmp_path, serve_host="0.0.0.0")
    assert deploy.gateway_host(wide, notes.append) == "127.0.0.1"
    assert notes == ["no API keys configured: binding 127.0.0.1, not 0.0.0.0"]

    notes.clear()
    assert deploy.gateway_host(get_settings(home=tmp_path), notes.append) == "127.0.0.1"
    assert len(notes) == 1 and "authentication is off" in notes[0]


def test_with_keys_the_gateway_binds_where_it_is_told(tmp_path: Path) -> None:
    notes: list[str] = []
    keyed = get_settings(home=tmp_path, serve_host="0.0.0.0", api_keys=KEYS)
    assert deploy.gateway_host(keyed, notes.append) == "0.0.0.0"
    assert notes == []


def test_no_fleet_running_is_an_error_for_status_and_nothing_to_stop(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path, ray_address="")
    with pytest.raises(deploy.ServeError, match="no fleet is running") as info:
        deploy.status(settings)
    assert info.value.exit_code == 1
    assert deploy.down(settings) == []
    assert deploy.ingress(settings) == "unknown"
