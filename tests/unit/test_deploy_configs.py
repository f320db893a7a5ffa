"""deploy/ (Dockerfile, KubeRay RayService and RayJob) agrees with the project it ships: the
lock's Ray, the Serve config in serve_apps/fleet.yaml, the fleet's CPU shares, the CLI's
defaults and the settings mlfleet reads.

No Docker daemon or Kubernetes API (with KubeRay's CRDs) is reachable offline, so these
files are checked as text and YAML, never built or applied (docs/deploy.md says so). Each
check also runs on a broken copy, to show that it can fail.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlfleet.serving.app import GATEWAY_CPUS, POOL_CPUS, FleetArgs
from mlfleet.serving.names import APP_NAME, GATEWAY, POOL, dedicated_deployment_name
from mlfleet.settings import get_settings
from mlfleet.spec import load_spec
from tests.support import REPO
from tests.support.deploy_configs import locked_version, shell_flag, unknown_settings

DEPLOY = REPO / "deploy"
Doc = dict[str, Any]


# --- Dockerfile -------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _python_tag() -> str:
    """cluster.yaml's `uv sync --python X.Y`: the one Python of every node, as pyXY."""
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    versions = shell_flag(cluster["setup_commands"], "--python")
    assert len(versions) == 1, versions
    return "py" + versions[0].replace(".", "")


def dockerfile_problems(text: str, ignore: str) -> list[str]:
    """What keeps the Dockerfile from being the image deploy/ promises (empty: none)."""
    out: list[str] = []
    steps = _instructions(text)
    froms = [rest for word, rest in steps if word == "FROM"]
    wanted = f"rayproject/ray:{locked_version('ray')}-{_python_tag()}"
    if froms != [wanted]:
        out.append(f"FROM {froms}: expected {wanted} (uv.lock's Ray, the cluster's Python)")

    uv_image = re.findall(r"--from=ghcr\.io/astral-sh/uv:(\S+)", text)
    uv_nodes = re.findall(
        r"astral\.sh/uv/([^/\s]+)/install\.sh", (REPO / "cluster.yaml").read_text()
    )
    if len(uv_image) != 1 or uv_image != uv_nodes:
        out.append(f"uv {uv_image} in the image, {uv_nodes} on cluster.yaml's nodes")
    syncs = [s for word, rest in steps if word == "RUN" for s in _uv_syncs(_run_words(rest))]
    if not syncs or not all({"--frozen", "--no-dev"} <= flags for flags in syncs):
        out.append("not every install is `uv sync --frozen --no-dev`")
    env = " ".join(rest for word, rest in steps if word == "ENV")
    if "UV_COMPILE_BYTECODE=1" not in env:
        out.append("bytecode is not compiled at install (UV_COMPILE_BYTECODE=1)")
    if "MLFLEET_HOME=" not in env:
        out.append("no MLFLEET_HOME")
    users = [rest for word, rest in steps if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        out.append("the image runs as root")

    # Every COPY from the build context exists and gets through the context's ignore file.
    allowed = {line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")}
    for word, rest in steps:
        if word != "COPY" or "--from=" in rest:
            continue
        sources = [a for a in shlex.split(rest) if not a.startswith("--")][:-1]
        for source in sources:
            if not (REPO / source).exists():
                out.append(f"COPY {source}: no such file in the repository")
            if source.rstrip("/") not in allowed:
                out.append(f"COPY {source}: excluded by Dockerfile.dockerignore")
    copied = " ".join(rest for word, rest in steps if word == "COPY")
    for needed in ("uv.lock", "pyproject.toml", "platform", "serve_apps", "jobs", "specs"):
        if needed not in copied:
            out.append(f"{needed} is not in the image")

    bad = unknown_settings(text)
    if bad:
        out.append(f"not mlfleet settings: {sorted(bad)}")
    return out


def _run_words(rest: str) -> list[str]:
    """A RUN's shell words, without its own flags (``--mount=...``)."""
    words = shlex.split(rest)
    while words and words[0].startswith("--"):
        words.pop(0)
    return words


def _uv_syncs(args: list[str]) -> list[set[str]]:
    """The flags of each `uv sync` among one RUN's words (its commands split at && ; ||)."""
    out: list[set[str]] = []
    command: list[str] = []
    for word in [*args, "&&"]:
        if word in ("&&", ";", "||"):
            if command[:2] == ["uv", "sync"]:
                out.append(set(command[2:]))
            command = []
        else:
            command.append(word)
    return out


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def _dockerignore() -> str:
    return (DEPLOY / "Dockerfile.dockerignore").read_text()


def test_dockerfile_builds_the_locked_project_on_the_matching_ray_image() -> None:
    assert dockerfile_problems(_dockerfile(), _dockerignore()) == []


DOCKERFILE_BREAKS = {
    "another Ray": (("2.60.0-py311", "2.59.0-py311"), "FROM"),
    "another Python": (("2.60.0-py311", "2.60.0-py312"), "FROM"),
    "unlocked install": (
        ("uv sync --frozen --no-dev --inexact \\", "uv sync --inexact \\"),
        "uv sync",
    ),
    "root": (("USER ray", "USER root"), "root"),
    "another uv": (("astral-sh/uv:0.13.9", "astral-sh/uv:0.9.0"), "uv ['0.9.0']"),
    "no bytecode": (("UV_COMPILE_BYTECODE=1", "UV_COMPILE_BYTECODE=0"), "bytecode"),
    "missing source": (("COPY --chown=ray:users jobs ./jobs", "COPY jobz ./jobs"), "jobz"),
}


@pytest.mark.parametrize(("edit", "expected"), DOCKERFILE_BREAKS.values(), ids=DOCKERFILE_BREAKS)
def test_each_dockerfile_promise_is_checked(edit: tuple[str, str], expected: str) -> None:
    text = _dockerfile()
    assert edit[0] in text
    found = dockerfile_problems(text.replace(edit[0], edit[1]), _dockerignore())
    assert any(expected in p for p in found), found


def test_the_context_ignore_file_must_let_copied_sources_through() -> None:
    found = dockerfile_problems(_dockerfile(), _dockerignore().replace("!specs/\n", ""))
    assert any("COPY specs: excluded" in p for p in found), found


# --- KubeRay: RayService and RayJob ---------------------------------------------------------


def _manifest(name: str) -> Doc:
    doc = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(doc, dict)
    return doc


def _containers(cluster: Doc) -> list[Doc]:
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _cpus(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def fleet_cpus_at_most(serve_config: Doc) -> float:
    """CPUs the fleet's replicas and its monitor reserve at their largest: what the
    application builder binds (its CPU shares, FleetArgs' replica bounds, each dedicated
    spec's serving block) and the monitor's share from the settings' default."""
    (application,) = serve_config["applications"]
    args = FleetArgs.model_validate(application.get("args", {}))
    total = GATEWAY_CPUS * args.gateway_max_replicas + POOL_CPUS * args.pool_max_replicas
    for path in sorted((REPO / args.specs_dir).glob("*/model.yaml")):
        serving = load_spec(path).spec.serving
        if serving.mode == "dedicated":
            total += serving.num_cpus * serving.autoscaling.max_replicas
    return total + get_settings().monitor_num_cpus


def cluster_problems(cluster: Doc, *, image: str) -> list[str]:
    """What keeps a RayCluster spec (of a RayService or a RayJob) from the cluster deploy/
    promises: the lock's Ray, token auth, one image, bounded workers."""
    out: list[str] = []
    ray_version = locked_version("ray")
    if cluster.get("rayVersion") != ray_version:
        out.append(f"rayVersion {cluster.get('rayVersion')!r} is not uv.lock's {ray_version}")
    auth = cluster.get("authOptions") or {}
    if auth.get("mode") != "token" or not auth.get("secretName"):
        out.append("token auth is not on (authOptions.mode: token, with a Secret)")
    for container in _containers(cluster):
        if container.get("image") != image:
            out.append(f"{container['name']} runs {container.get('image')!r}, not {image!r}")
        for var in container.get("env", []):
            if var["name"] == "RAY_AUTH_MODE" and var.get("value") != "token":
                out.append(f"{container['name']} turns token auth off")
    workers = cluster.get("workerGroupSpecs", [])
    if not workers:
        out.append("no worker group")
    for group in workers:
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high and high):
            out.append(f"{group['groupName']}: replicas {low}..{high} are not bounds")
        for container in group["template"]["spec"]["containers"]:
            limits = container.get("resources", {}).get("limits", {})
            if "cpu" not in limits:
                out.append(f"{group['groupName']}: no CPU limit (Ray counts CPUs from it)")
    return out


def rayservice_problems(doc: Doc, fleet_yaml: Doc, image: str) -> list[str]:
    """What keeps the RayService from serving serve_apps/fleet.yaml on the deploy/ cluster."""
    out: list[str] = []
    if (doc.get("apiVersion"), doc.get("kind")) != ("ray.io/v1", "RayService"):
        out.append("not a ray.io/v1 RayService")
    spec = doc["spec"]
    serve_config = yaml.safe_load(spec["serveConfigV2"])
    if serve_config != fleet_yaml:
        out.append("serveConfigV2 is not serve_apps/fleet.yaml")
    cluster = spec["rayClusterConfig"]
    out += cluster_problems(cluster, image=image)

    # The Serve application is the fleet, as the CLI deploys it.
    settings = get_settings()
    (application,) = serve_config["applications"]
    module, _, attribute = application["import_path"].partition(":")
    if (module, attribute) != ("serve_apps.fleet", "app_builder"):
        out.append(f"import_path {application['import_path']} is not the fleet's builder")
    if application["name"] != APP_NAME or application.get("route_prefix") != "/":
        out.append("the application is not the fleet (name and route prefix `serve up` uses)")
    unknown_args = set(application.get("args", {})) - set(FleetArgs.model_fields)
    if unknown_args:
        out.append(f"args FleetArgs ignores: {sorted(unknown_args)}")
    specs_dir = application.get("args", {}).get("specs_dir", "specs")
    if not any((REPO / specs_dir).glob("*/model.yaml")):
        out.append(f"specs_dir {specs_dir!r} holds no model specs")
    known = {GATEWAY, POOL} | {
        dedicated_deployment_name(load_spec(p).spec.name)
        for p in (REPO / specs_dir).glob("*/model.yaml")
    }
    for deployment in application.get("deployments", []):
        if deployment.get("name") not in known:
            out.append(f"deployment {deployment.get('name')!r} is not one the fleet binds")
    http = serve_config.get("http_options", {})
    if (http.get("host"), http.get("port")) != (settings.serve_host, settings.serve_port):
        out.append("Serve's HTTP address is not the CLI's default (MLFLEET_SERVE_HOST/PORT)")
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    if http.get("port") not in {p["containerPort"] for p in head.get("ports", [])}:
        out.append("the head does not expose Serve's port")

    # The fleet fits: the smallest cluster holds every replica at its largest.
    head_cpus = _cpus(cluster["headGroupSpec"]["rayStartParams"].get("num-cpus", 0))
    worker_cpus = sum(
        _cpus(c["resources"]["limits"]["cpu"]) * g["minReplicas"]
        for g in cluster.get("workerGroupSpecs", [])
        for c in g["template"]["spec"]["containers"]
        if "cpu" in c.get("resources", {}).get("limits", {})
    )
    needed = fleet_cpus_at_most(serve_config)
    if head_cpus + worker_cpus < needed:
        out.append(
            f"{head_cpus + worker_cpus} CPUs at the fewest workers; the fleet takes {needed}"
        )
    return out


def rayjob_problems(doc: Doc, image: str) -> list[str]:
    """What keeps the RayJob from training a spec of the repository on the deploy/ cluster."""
    out: list[str] = []
    if (doc.get("apiVersion"), doc.get("kind")) != ("ray.io/v1", "RayJob"):
        out.append("not a ray.io/v1 RayJob")
    spec = doc["spec"]
    out += cluster_problems(spec["rayClusterSpec"], image=image)
    argv = shlex.split(spec.get("entrypoint", ""))
    if argv[:2] != ["python", "jobs/train.py"] or not (REPO / argv[1]).is_file():
        out.append(f"entrypoint {spec.get('entrypoint')!r} does not run jobs/train.py")
    else:
        from jobs.train import parse

        try:
            cli_args = parse(argv[2:])
        except SystemExit:
            out.append(f"jobs/train.py refuses {argv[2:]}")
        else:
            load_spec(REPO / cli_args[1])  # raises SpecError naming what is wrong
    if not spec.get("shutdownAfterJobFinishes"):
        out.append("the job's cluster outlives the job")
    return out


def _image() -> str:
    """The image the manifests run: the one the head of the RayService names."""
    service = _manifest("rayservice.yaml")
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    return str(head["containers"][0]["image"])


def _fleet_yaml() -> Doc:
    doc = yaml.safe_load((REPO / "serve_apps" / "fleet.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_rayservice_serves_fleet_yaml_on_the_locked_ray_with_token_auth() -> None:
    assert rayservice_problems(_manifest("rayservice.yaml"), _fleet_yaml(), _image()) == []


def test_rayjob_trains_a_spec_of_the_repository_on_the_same_image() -> None:
    assert rayjob_problems(_manifest("rayjob.yaml"), _image()) == []


def test_manifests_name_only_real_settings() -> None:
    for name in ("rayservice.yaml", "rayjob.yaml"):
        assert unknown_settings((DEPLOY / name).read_text()) == set(), name


def _cluster_of(doc: Doc) -> Doc:
    return doc["spec"].get("rayClusterConfig") or doc["spec"]["rayClusterSpec"]


def _workers(doc: Doc) -> Doc:
    return _cluster_of(doc)["workerGroupSpecs"][0]


def _worker_container(doc: Doc) -> Doc:
    return _workers(doc)["template"]["spec"]["containers"][0]


def _serve_config_edit(edit: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        config = yaml.safe_load(doc["spec"]["serveConfigV2"])
        edit(config)
        doc["spec"]["serveConfigV2"] = yaml.safe_dump(config)

    return mutate


def _app(config: Doc) -> Doc:
    return config["applications"][0]  # type: ignore[no-any-return]


SERVICE_BREAKS: dict[str, tuple[Callable[[Doc], None], str]] = {
    "another serve config": (
        _serve_config_edit(lambda c: c["http_options"].update(port=8080)),
        "not serve_apps/fleet.yaml",
    ),
    "another Ray": (lambda d: _cluster_of(d).update(rayVersion="2.59.0"), "rayVersion"),
    "no token": (lambda d: _cluster_of(d).pop("authOptions"), "token auth"),
    "token turned off": (
        lambda d: (
            _worker_container(d)
            .setdefault("env", [])
            .append({"name": "RAY_AUTH_MODE", "value": "disabled"})
        ),
        "turns token auth off",
    ),
    "another image": (lambda d: _worker_container(d).update(image="other:1"), "other:1"),
    "unbounded workers": (lambda d: _workers(d).pop("maxReplicas"), "bounds"),
    "too few CPUs": (
        lambda d: _worker_container(d)["resources"]["limits"].update(cpu="1"),
        "the fleet takes",
    ),
}


@pytest.mark.parametrize(("mutate", "expected"), SERVICE_BREAKS.values(), ids=SERVICE_BREAKS)
def test_each_rayservice_promise_is_checked(mutate: Callable[[Doc], None], expected: str) -> None:
    doc = copy.deepcopy(_manifest("rayservice.yaml"))
    mutate(doc)
    found = rayservice_problems(doc, _fleet_yaml(), _image())
    assert any(expected in p for p in found), found


FLEET_BREAKS: dict[str, tuple[Callable[[Doc], None], str]] = {
    "another builder": (lambda c: _app(c).update(import_path="serve_apps.fleet:app"), "builder"),
    "another route": (lambda c: _app(c).update(route_prefix="/api"), "route prefix"),
    "misspelt argument": (lambda c: _app(c)["args"].update(spec_dir="specs"), "spec_dir"),
    "no specs": (lambda c: _app(c)["args"].update(specs_dir="nowhere"), "no model specs"),
    "unknown deployment": (lambda c: _app(c).update(deployments=[{"name": "Gatway"}]), "Gatway"),
    "another port": (lambda c: c["http_options"].update(port=8080), "CLI's default"),
}


@pytest.mark.parametrize(("edit", "expected"), FLEET_BREAKS.values(), ids=FLEET_BREAKS)
def test_each_fleet_check_is_checked(edit: Callable[[Doc], None], expected: str) -> None:
    """The same edit in fleet.yaml and the RayService: they still agree, and the check of
    the Serve config against the fleet and the CLI is what catches it."""
    fleet = _fleet_yaml()
    edit(fleet)
    doc = copy.deepcopy(_manifest("rayservice.yaml"))
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(fleet)
    found = rayservice_problems(doc, fleet, _image())
    assert not any("not serve_apps/fleet.yaml" in p for p in found)
    assert any(expected in p for p in found), found


JOB_BREAKS: dict[str, tuple[Callable[[Doc], None], str]] = {
    "another script": (
        lambda d: d["spec"].update(entrypoint="python jobs/trian.py --spec x"),
        "does not run jobs/train.py",
    ),
    "unknown flag": (
        lambda d: d["spec"].update(entrypoint="python jobs/train.py --model x"),
        "refuses",
    ),
    "lingering cluster": (lambda d: d["spec"].update(shutdownAfterJobFinishes=False), "outlives"),
    "no token": (lambda d: _cluster_of(d).pop("authOptions"), "token auth"),
}


@pytest.mark.parametrize(("mutate", "expected"), JOB_BREAKS.values(), ids=JOB_BREAKS)
def test_each_rayjob_promise_is_checked(mutate: Callable[[Doc], None], expected: str) -> None:
    doc = copy.deepcopy(_manifest("rayjob.yaml"))
    mutate(doc)
    found = rayjob_problems(doc, _image())
    assert any(expected in p for p in found), found


def test_a_rayjob_naming_a_missing_spec_fails() -> None:
    doc = copy.deepcopy(_manifest("rayjob.yaml"))
    doc["spec"]["entrypoint"] = "python jobs/train.py --spec specs/nothing/model.yaml"
    from mlfleet.errors import MlfleetError

    with pytest.raises(MlfleetError, match="nothing"):
        rayjob_problems(doc, _image())


def test_the_fleet_fits_on_the_smallest_cluster_by_its_own_numbers() -> None:
    """The CPU sum the RayService is checked against, spelled out for the committed fleet."""
    needed = fleet_cpus_at_most(_fleet_yaml())
    assert needed == pytest.approx(2 * 0.25 + 2 * 0.25 + 2 * 0.25 + 0.1)
    assert Path(REPO / "specs/penguins/model.yaml").is_file()
