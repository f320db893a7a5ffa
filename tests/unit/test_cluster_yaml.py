"""cluster.yaml is a launcher config Ray accepts, and it keeps the cluster's promises: token
auth on every node, the dashboard on loopback, the locked environment, the fleet and its
monitor started on the head, bounded workers.

Validated by the schema the installed Ray ships (``ray/autoscaler/ray-schema.json``, through
jsonschema, a dependency of Ray) and by Ray's own validator after the defaults `ray up`
fills in. Each check is also run on a broken copy, to show that it can fail.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support import REPO
from tests.support.deploy_configs import shell_flag, unknown_settings

CLUSTER = REPO / "cluster.yaml"
Config = dict[str, Any]


def _load() -> Config:
    config = yaml.safe_load(CLUSTER.read_text())
    assert isinstance(config, dict)
    return config


def _ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    schema = json.loads(path.read_text())
    assert isinstance(schema, dict)
    return schema


def _ray_validates(config: Config) -> None:
    """What `ray up` does with the file before it launches anything."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def _ray_starts(commands: list[str]) -> list[str]:
    return [c for c in commands if "ray start" in c]


def problems(config: Config) -> list[str]:
    """What keeps ``config`` from being the cluster cluster.yaml promises (empty: none)."""
    out: list[str] = []
    head_cmds: list[str] = config.get("head_start_ray_commands", [])
    worker_cmds: list[str] = config.get("worker_start_ray_commands", [])
    setup: list[str] = config.get("setup_commands", [])

    # Token auth: every `ray start`, the token on every node, private to its user.
    starts = _ray_starts(head_cmds) + _ray_starts(worker_cmds)
    if len(_ray_starts(head_cmds)) != 1 or len(_ray_starts(worker_cmds)) != 1:
        out.append("expected one `ray start` for the head and one for workers")
    for command in starts:
        if "RAY_AUTH_MODE=token" not in command:
            out.append(f"ray start without RAY_AUTH_MODE=token: {command!r}")
    everything = yaml.safe_dump(config)
    if any(mode != "token" for mode in _assigned(everything, "RAY_AUTH_MODE")):
        out.append("RAY_AUTH_MODE set to something other than token")
    if config.get("file_mounts", {}).get("/home/ubuntu/.ray/auth_token") != "~/.ray/auth_token":
        out.append("the token is not copied to ~/.ray/auth_token on the nodes")
    if not any("chmod 600 ~/.ray/auth_token" in c for c in setup):
        out.append("the token's mode is not set to 600")

    # The dashboard (Jobs API) on the head's loopback only.
    if shell_flag(_ray_starts(head_cmds), "--dashboard-host") != ["127.0.0.1"]:
        out.append("the head's dashboard is not on --dashboard-host=127.0.0.1")
    if shell_flag(_ray_starts(worker_cmds), "--dashboard-host"):
        out.append("workers name a dashboard host")

    # The locked environment, from uv.lock, on every node.
    syncs = [shlex.split(c.split("&&")[-1]) for c in setup if "uv sync" in c]
    if not any({"--frozen", "--no-dev"} <= set(args) for args in syncs):
        out.append("no `uv sync --frozen --no-dev` in setup_commands")

    # The fleet and the monitor on the head, after Ray, on this cluster.
    head_start = next((i for i, c in enumerate(head_cmds) if "ray start --head" in c), None)
    serve_up = [i for i, c in enumerate(head_cmds) if "mlfleet serve up" in c]
    if head_start is None or len(serve_up) != 1 or serve_up[0] < head_start:
        out.append("`mlfleet serve up` does not follow `ray start --head` once")
    else:
        command = head_cmds[serve_up[0]]
        port = shell_flag([head_cmds[head_start]], "--port")
        # Without it, serve up would start a second, local head of its own.
        if _assigned(command, "MLFLEET_RAY_ADDRESS") != [f"127.0.0.1:{port[0] if port else ''}"]:
            out.append("serve up does not join the head's GCS (MLFLEET_RAY_ADDRESS)")
        specs = shell_flag([command], "--specs")
        if len(specs) != 1 or not any((REPO / specs[0]).glob("*/model.yaml")):
            out.append("serve up's --specs is not a folder of model specs")
    if any("serve up" in c for c in worker_cmds):
        out.append("workers start the fleet")

    # Workers: a bounded, autoscaled CPU type.
    types: dict[str, Any] = config.get("available_node_types", {})
    if config.get("head_node_type") not in types:
        out.append("head_node_type is not a node type")
    workers = {k: v for k, v in types.items() if k != config.get("head_node_type")}
    if not workers:
        out.append("no worker node type")
    for name, node in workers.items():
        low, high = node.get("min_workers"), node.get("max_workers")
        if not (isinstance(low, int) and isinstance(high, int)):
            out.append(f"{name}: min_workers and max_workers are not set")
        elif not 0 <= low <= high <= config.get("max_workers", 0) or high < 1:
            out.append(f"{name}: bounds {low}..{high} outside 0..max_workers, or no room")
        if node.get("resources", {}).get("GPU"):
            out.append(f"{name}: not a CPU worker")

    bad = unknown_settings(everything)
    if bad:
        out.append(f"not mlfleet settings: {sorted(bad)}")
    return out


def _assigned(text: str, name: str) -> list[str]:
    """Values assigned to ``name=`` in shell text."""
    return re.findall(rf"(?<![\w$]){name}=([^\s;'\"]*)", text)


def test_cluster_yaml_is_valid_for_the_installed_ray() -> None:
    config = _load()
    jsonschema.validate(config, _ray_schema())
    _ray_validates(config)


def test_cluster_yaml_keeps_its_promises() -> None:
    assert problems(_load()) == []


def _set(path: str, value: Any) -> Callable[[Config], None]:
    keys = path.split(".")

    def mutate(config: Config) -> None:
        node = config
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return mutate


SCHEMA_BREAKS = {
    "unknown top-level key": _set("dashboard_host", "0.0.0.0"),
    "min_workers as text": _set("available_node_types.cpu_worker.min_workers", "0"),
    "worker type without node_config": lambda c: c["available_node_types"]["cpu_worker"].pop(
        "node_config"
    ),
    "negative max_workers": _set("max_workers", -1),
}


@pytest.mark.parametrize("mutate", SCHEMA_BREAKS.values(), ids=SCHEMA_BREAKS.keys())
def test_rays_schema_and_validator_reject_a_broken_config(
    mutate: Callable[[Config], None],
) -> None:
    config = _load()
    mutate(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _ray_schema())
    with pytest.raises(jsonschema.ValidationError):
        _ray_validates(config)


def _edit_command(key: str, old: str, new: str) -> Callable[[Config], None]:
    def mutate(config: Config) -> None:
        config[key] = [c.replace(old, new) for c in config[key]]

    return mutate


def _drop_serve_up(config: Config) -> None:
    config["head_start_ray_commands"] = [
        c for c in config["head_start_ray_commands"] if "serve up" not in c
    ]


# (commands, text, replaced by, the problem expected)
COMMAND_BREAKS = {
    "worker without token": ("worker", "RAY_AUTH_MODE=token", "", "RAY_AUTH_MODE=token"),
    "dashboard on every interface": ("head", "127.0.0.1 --auto", "0.0.0.0 --auto", "dashboard"),
    "unlocked install": ("setup", "uv sync --frozen", "uv sync", "uv sync --frozen --no-dev"),
    "own head": ("head", " MLFLEET_RAY_ADDRESS=127.0.0.1:6379", "", "MLFLEET_RAY_ADDRESS"),
    "misspelt setting": ("head", "MLFLEET_HOME=", "MLFLEET_HOMEDIR=", "MLFLEET_HOMEDIR"),
    "token left readable": ("setup", "chmod 600", "chmod 644", "mode is not set to 600"),
}
COMMAND_KEYS = {
    "head": "head_start_ray_commands",
    "worker": "worker_start_ray_commands",
    "setup": "setup_commands",
}
PROMISE_BREAKS = {
    **{
        name: (_edit_command(COMMAND_KEYS[where], old, new), expected)
        for name, (where, old, new, expected) in COMMAND_BREAKS.items()
    },
    "no fleet": (_drop_serve_up, "serve up"),
    "unbounded workers": (_set("available_node_types.cpu_worker.max_workers", 99), "bounds"),
}


@pytest.mark.parametrize(("mutate", "expected"), PROMISE_BREAKS.values(), ids=PROMISE_BREAKS.keys())
def test_each_promise_is_checked(mutate: Callable[[Config], None], expected: str) -> None:
    config = _load()
    mutate(config)
    found = problems(config)
    assert any(expected in p for p in found), found
