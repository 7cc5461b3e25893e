"""The deploy files say what the code does: there is no Docker engine here, so this is the check.

Every file parses; every command it runs is one `ecwid-relay` accepts; every RELAY_*
variable it sets is one the settings read; ports and probe paths are the ones the
processes serve; grace periods cover the delivery job timeout.
"""

from __future__ import annotations

import configparser
import re
import shlex
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


def test_redis_conf_is_durable() -> None:
    lines = (DEPLOY / "redis.conf").read_text().splitlines()
    settings = dict(line.split(None, 1) for line in lines if line.strip() and not line.startswith("#"))
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "always"
    assert settings["maxmemory-policy"] == "noeviction"


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


def test_compose_runs_redis_with_aof_one_receiver_two_workers_one_scheduler() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "receiver", "worker", "scheduler"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"]) and "redis-data" in compose["volumes"]
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    commands = {name: accepts(services[name]["command"]) for name in ("receiver", "worker", "scheduler")}
    assert {name: parsed.command for name, parsed in commands.items()} == {
        "receiver": "serve", "worker": "worker", "scheduler": "scheduler"
    }  # fmt: skip
    assert services["receiver"]["ports"] == [f"{commands['receiver'].port}:{commands['receiver'].port}"]
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
    # The secrets are placeholders, valid as settings (16+ characters), never real values.
    Settings.from_env({**env_file(DEPLOY / "relay.env.example"), "RELAY_REDIS_URL": "redis://redis:6379/0"})


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


def test_kubernetes_redis_is_a_durable_statefulset() -> None:
    redis = by_kind("StatefulSet")["redis"]
    conf = dict(
        line.split(None, 1) for line in by_kind("ConfigMap")["redis-conf"]["data"]["redis.conf"].splitlines() if line
    )
    assert (conf["appendonly"], conf["appendfsync"], conf["maxmemory-policy"]) == ("yes", "always", "noeviction")
    assert redis["spec"]["replicas"] == 1
    [claim] = redis["spec"]["volumeClaimTemplates"]
    [container] = redis["spec"]["template"]["spec"]["containers"]
    assert {"name": claim["metadata"]["name"], "mountPath": conf["dir"]} in container["volumeMounts"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")


def test_systemd_units_run_real_commands() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert len(units) == 3
    for path in units:
        unit = configparser.ConfigParser(interpolation=None, strict=True)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read_string(path.read_text())
        service = unit["Service"]
        executable, *args = shlex.split(service["ExecStart"].replace("%i", "1"))
        assert executable == "/opt/ecwid-relay/bin/ecwid-relay"
        parsed = accepts(args)
        assert service["KillSignal"] == "SIGTERM"
        if parsed.command == "worker":
            assert int(service["TimeoutStopSec"]) >= JOB_TIMEOUT
            assert parsed.metrics_port == 9101
