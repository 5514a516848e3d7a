"""compose.yaml, the Kubernetes manifests and the Dockerfile agree with the code's settings.

Variable names come from the settings classes themselves (shared/config.py, sandbox/config.py),
ports from the settings defaults, paths from the apps. Docker is not needed: this reads files.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from ingress import __main__ as ingress_main
from ingress.checkout_app import create_checkout_app
from ingress.health import ADMIN_APP
from ingress.webhook_app import WEBHOOK_PATH, create_webhook_app
from sandbox.app import create_sandbox_app
from sandbox.config import SandboxConfig, SandboxEnv
from shared.config import REAL_PAYRAILS_SECRETS, EnvSettings, MigrationSettings, WorkerSettings
from shared.errors import ConfigError
from tests.ops.deploy_files import (
    COMPOSE,
    DEPLOY,
    ROOT,
    k8s_documents,
    load_yaml,
)
from tests.settings import Settings
from worker.health import create_health_app

SERVICE_VARIABLES = set(Settings.variables().values()) | set(MigrationSettings.variables().values())
SANDBOX_VARIABLES = set(SandboxEnv.variables().values())
SECRET_VARIABLES = {
    "DATABASE_URL",
    "AMQP_URL",
    "PAYRAILS_CLIENT_SECRET",
    "PAYRAILS_WEBHOOK_SECRETS",
    "MERCHANT_API_KEYS",
}
DEFAULTS = Settings()
WEBHOOKS = ("python", "-m", "ingress", "webhooks")
CHECKOUT = ("python", "-m", "ingress", "checkout")
WORKER = ("python", "-m", "worker")
SANDBOX = ("python", "-m", "sandbox")
# process (by its command) -> its listeners, by the name its Kubernetes container port carries:
# "http" the public port, "admin" the one with readiness and metrics (the worker has only that
# one) -> (the port variable, the port the code listens on).
LISTENERS: dict[tuple[str, ...], dict[str, tuple[str, int]]] = {
    WEBHOOKS: {
        "http": ("WEBHOOK_PORT", DEFAULTS.webhook_port),
        "admin": ("WEBHOOK_ADMIN_PORT", DEFAULTS.webhook_admin_port),
    },
    CHECKOUT: {
        "http": ("CHECKOUT_PORT", DEFAULTS.checkout_port),
        "admin": ("CHECKOUT_ADMIN_PORT", DEFAULTS.checkout_admin_port),
    },
    WORKER: {"admin": ("WORKER_METRICS_PORT", DEFAULTS.worker_metrics_port)},
    SANDBOX: {"http": ("SANDBOX_PORT", SandboxConfig().port)},
}
PROCESSES = set(LISTENERS)
# Where Prometheus runs: the only namespace admitted to the admin ports.
MONITORING_NAMESPACE = "monitoring"
MIGRATE = ("alembic", "upgrade", "head")
# process (by its command) -> the settings class its entrypoint loads, which declares the real
# Payrails secrets it requires; the alembic containers (migration Job, wait-for-schema) load
# MigrationSettings, which holds no secret of Payrails.
PROCESS_SETTINGS: dict[tuple[str, ...], type[EnvSettings]] = {
    WEBHOOKS: ingress_main.APP_SETTINGS["webhooks"],
    CHECKOUT: ingress_main.APP_SETTINGS["checkout"],
    WORKER: WorkerSettings,
}
# ``recon`` loads the worker's settings.
RECON_SETTINGS = WorkerSettings
# Operators run ``recon`` inside the worker's container (kubectl exec deploy/worker -- recon).
RECON_RUNS_BESIDE = WORKER
# Stand-ins for secretKeyRef values: the value only has to parse.
# What a secret store would hold: values of the shape and length the processes demand.
SECRET_STAND_INS = {
    "DATABASE_URL": "postgresql+psycopg://recon:from-secret@postgres:5432/recon",
    "MERCHANT_API_KEYS": "from-secret-merchant-key-0123456789abcdef",
    # The form secrets.md documents; amqps with the system's trust store.
    "AMQP_URL": "amqps://recon:from-secret@rabbitmq:5671/recon",
}


# (process, listener) -> the app served there.
APP_FACTORIES: dict[tuple[tuple[str, ...], str], Callable[[], web.Application]] = {
    (WEBHOOKS, "http"): lambda: create_webhook_app(DEFAULTS),
    (WEBHOOKS, "admin"): lambda: create_webhook_app(DEFAULTS)[ADMIN_APP],
    (CHECKOUT, "http"): lambda: create_checkout_app(DEFAULTS),
    (CHECKOUT, "admin"): lambda: create_checkout_app(DEFAULTS)[ADMIN_APP],
    (WORKER, "admin"): lambda: create_health_app({}),
    (SANDBOX, "http"): lambda: create_sandbox_app(SandboxConfig()),
}


def listener_at(command: tuple[str, ...], port: int) -> str:
    """The name of the listener of ``command`` on ``port``."""
    (name,) = [n for n, (_, number) in LISTENERS[command].items() if number == port]
    return name


def get_routes(command: tuple[str, ...], listener: str) -> dict[str, str]:
    """The GET paths the process ``command`` serves on ``listener``, read from its app
    factory, each with the module of its handler."""
    app = APP_FACTORIES[command, listener]()
    return {
        r.resource.canonical: r.handler.__module__
        for r in app.router.routes()
        if r.method == "GET" and r.resource
    }


def served_paths(command: tuple[str, ...], listener: str) -> set[str]:
    """The GET paths the process ``command`` serves on ``listener``."""
    return set(get_routes(command, listener))


def metrics_paths(command: tuple[str, ...], listener: str) -> set[str]:
    """The GET paths on ``listener`` that prometheus_client's exposition handler answers."""
    return {
        path
        for path, module in get_routes(command, listener).items()
        if module.startswith("prometheus_client.")
    }


def test_the_settings_reader_finds_the_documented_variables() -> None:
    assert {"DATABASE_URL", "AMQP_URL", "WEBHOOK_PORT", "SWEEPER_INTERVAL_SECONDS"} <= (
        SERVICE_VARIABLES
    )
    assert {"SANDBOX_PORT", "SANDBOX_WEBHOOK_URL", "PAYRAILS_CLIENT_ID"} <= SANDBOX_VARIABLES
    ports = {c: {n: port for n, (_, port) in ls.items()} for c, ls in LISTENERS.items()}
    assert ports == {
        WEBHOOKS: {"http": 8080, "admin": 9080},
        CHECKOUT: {"http": 8000, "admin": 9000},
        WORKER: {"admin": 9100},
        SANDBOX: {"http": 8090},
    }
    for listeners in LISTENERS.values():
        assert {variable for variable, _ in listeners.values()} <= (
            SERVICE_VARIABLES | SANDBOX_VARIABLES
        )


@pytest.mark.parametrize("command", [WEBHOOKS, CHECKOUT], ids=["webhooks", "checkout"])
def test_public_ports_serve_no_readiness_and_no_metrics(command: tuple[str, ...]) -> None:
    assert served_paths(command, "http") & {"/readyz", "/metrics"} == set()
    assert {"/readyz", "/metrics"} <= served_paths(command, "admin")
    assert metrics_paths(command, "admin") == {"/metrics"}


def test_every_process_serves_metrics_on_its_admin_port() -> None:
    for command, listeners in LISTENERS.items():
        if "admin" in listeners:
            assert metrics_paths(command, "admin") == {"/metrics"}, command


# --- compose ---------------------------------------------------------------------------------
def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_yaml(COMPOSE)["services"]
    return services


def own_services() -> dict[str, dict[str, Any]]:
    """The services that run this project's image."""
    return {n: s for n, s in compose_services().items() if s.get("image") == "payrails-recon:local"}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping"
    return {str(k): str(v) for k, v in env.items()}


def test_compose_runs_every_process_of_the_service() -> None:
    services = compose_services()
    assert {
        "rabbitmq",
        "postgres",
        "migrate",
        "sandbox",
        "ingress-webhooks",
        "ingress-checkout",
        "worker",
        "prometheus",
        "grafana",
    } <= services.keys()
    commands = {tuple(s["command"]) for s in own_services().values()}
    assert commands == {*PROCESSES, MIGRATE}


@pytest.mark.parametrize(
    "name", ["migrate", "sandbox", "ingress-webhooks", "ingress-checkout", "worker"]
)
def test_compose_environment_variables_are_read_by_the_code(name: str) -> None:
    service = own_services()[name]
    env = environment(service)
    known = SANDBOX_VARIABLES if name == "sandbox" else SERVICE_VARIABLES
    assert env.keys() - known == set(), f"{name} sets variables the code never reads"
    if name == "sandbox":
        SandboxConfig.from_env(env)
    else:
        Settings.from_env(env)  # every value parses


def test_compose_ports_and_health_checks_match_the_code() -> None:
    for name, service in own_services().items():
        command = tuple(service["command"])
        if command == MIGRATE:
            continue
        for listener, (variable, port) in LISTENERS[command].items():
            assert environment(service).get(variable, str(port)) == str(port), name
            # Admin ports are published on the host's loopback only.
            published = f"127.0.0.1:{port}:{port}" if listener == "admin" else f"{port}:{port}"
            assert published in service["ports"], f"{name} does not publish {published}"
        assert len(service["ports"]) == len(LISTENERS[command]), name
        probe = " ".join(service["healthcheck"]["test"])
        match = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z/_]+)'", probe)
        assert match, f"{name} health check calls no port of its own"
        listener = listener_at(command, int(match.group(1)))
        served = served_paths(command, listener)
        # Readiness where the process serves it, else liveness (the worker's checks its deps).
        assert match.group(2) == ("/readyz" if "/readyz" in served else "/healthz"), name


def test_compose_admin_servers_listen_on_the_container_network() -> None:
    """Else Prometheus, in its own container, could not scrape them."""
    for name, service in own_services().items():
        command = tuple(service["command"])
        if "admin" in LISTENERS.get(command, {}):
            assert environment(service).get("ADMIN_HOST") == "0.0.0.0", name


def test_compose_services_reach_each_other_on_the_real_ports() -> None:
    services = own_services()
    sandbox = urlsplit(environment(services["ingress-checkout"])["PAYRAILS_BASE_URL"])
    assert (sandbox.hostname, sandbox.port) == ("sandbox", SandboxConfig().port)
    webhook = urlsplit(environment(services["sandbox"])["SANDBOX_WEBHOOK_URL"])
    assert (webhook.hostname, webhook.port, webhook.path) == (
        "ingress-webhooks",
        DEFAULTS.webhook_port,
        WEBHOOK_PATH,
    )
    for name in ("ingress-webhooks", "ingress-checkout", "worker"):
        amqp = urlsplit(environment(services[name])["AMQP_URL"])
        assert amqp.hostname == "rabbitmq", name
    for name in ("migrate", "ingress-checkout", "worker"):
        assert urlsplit(environment(services[name])["DATABASE_URL"]).hostname == "postgres", name


def test_compose_mounts_files_that_exist() -> None:
    for name, service in compose_services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_scrapes_each_process_on_its_admin_port() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets["recon-ingress-webhooks"] == f"ingress-webhooks:{DEFAULTS.webhook_admin_port}"
    assert targets["recon-ingress-checkout"] == f"ingress-checkout:{DEFAULTS.checkout_admin_port}"
    assert targets["recon-worker"] == f"worker:{DEFAULTS.worker_metrics_port}"


def test_prometheus_scrapes_each_process_on_the_path_it_serves_metrics_on() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    commands = {name: tuple(s["command"]) for name, s in own_services().items()}
    scraped: set[tuple[str, ...]] = set()
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                if host not in commands:
                    continue  # not this project's process (RabbitMQ)
                path = job.get("metrics_path", "/metrics")  # Prometheus' default
                listener = listener_at(commands[host], int(port))
                assert listener == "admin", f"{job['job_name']} scrapes a public port"
                assert path in metrics_paths(commands[host], listener), (
                    f"{job['job_name']} scrapes {path}"
                )
                scraped.add(commands[host])
    assert scraped == PROCESSES - {SANDBOX}


def test_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
    uid = provisioned["datasources"][0]["uid"]
    dashboard = (DEPLOY / "grafana" / "dashboards" / "recon.json").read_text()
    assert set(re.findall(r'"uid": "([^"]+)"', dashboard)) - {
        "payrails-recon",
        "-- Grafana --",
    } == {uid}


# --- Kubernetes ------------------------------------------------------------------------------
def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_documents() if doc["kind"] == kind]


def configmap_data() -> dict[str, str]:
    return {k: str(v) for cm in of_kind("ConfigMap") for k, v in cm.get("data", {}).items()}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def deployment(name: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == name]
    return found


def env_values(container: dict[str, Any]) -> dict[str, Any]:
    return {env["name"]: env.get("value", env.get("valueFrom")) for env in container.get("env", [])}


def test_k8s_manifests_hold_the_expected_objects() -> None:
    kinds = [doc["kind"] for doc in k8s_documents()]
    assert kinds.count("Deployment") == 3
    assert {
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Job",
        "NetworkPolicy",
    } <= set(kinds)
    assert "Secret" not in kinds, "secrets are referenced, never shipped"
    commands = {tuple(c["command"]) for d in of_kind("Deployment") for c in main_containers(d)}
    assert commands == PROCESSES - {SANDBOX}
    (job,) = of_kind("Job")
    assert [tuple(c["command"]) for c in containers(job)] == [MIGRATE]


def test_k8s_environment_variables_are_read_by_the_code_and_secrets_are_references() -> None:
    data = configmap_data()
    assert data.keys() - SERVICE_VARIABLES == set()
    assert data.keys() & SECRET_VARIABLES == set(), "a secret in a ConfigMap"
    for workload in [*of_kind("Deployment"), *of_kind("Job")]:
        for container in containers(workload):
            for env in container.get("env", []):
                assert env["name"] in SERVICE_VARIABLES, env["name"]
                if env["name"] in SECRET_VARIABLES:
                    assert "value" not in env, f"{env['name']} must come from a Secret"
                    assert env["valueFrom"]["secretKeyRef"]["name"]
            for source in container.get("envFrom", []):
                assert "configMapRef" in source, "only ConfigMaps are loaded whole"
                assert "prefix" not in source, "variables are read by their own names"


def k8s_containers() -> dict[str, dict[str, Any]]:
    """Every container (init containers too) of every Deployment and Job, by workload/container."""
    return {
        f"{workload['metadata']['name']}/{container['name']}": container
        for workload in [*of_kind("Deployment"), *of_kind("Job")]
        for container in containers(workload)
    }


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    """What the container's process finds in its environment: the ConfigMaps it loads whole,
    then its own ``env`` entries (which win, as in Kubernetes), a secretKeyRef as a stand-in."""
    maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind("ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update({k: str(v) for k, v in maps[source["configMapRef"]["name"]].items()})
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = str(entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[name] = SECRET_STAND_INS.get(name, f"{ref['name']}.{ref['key']}")
    return env


def requirements(container: dict[str, Any]) -> dict[str, type[EnvSettings]]:
    """Each process the container runs, with the settings class it loads at start."""
    command = tuple(container["command"])
    if "alembic" in " ".join(command):
        return {"alembic": MigrationSettings}  # migrations/env.py
    found = {" ".join(command): PROCESS_SETTINGS[command]}
    if command == RECON_RUNS_BESIDE:
        found["recon"] = RECON_SETTINGS
    return found


def payrails_secrets_used(container: dict[str, Any]) -> set[str]:
    """The real Payrails secrets the container's processes use (alembic uses none)."""
    return {name for cls in requirements(container).values() for name in cls.real_secrets()}


@pytest.mark.parametrize("name", k8s_containers())
def test_k8s_each_container_starts_on_its_own_environment(name: str) -> None:
    container = k8s_containers()[name]
    env = container_environment(container)
    for process, settings_class in requirements(container).items():
        try:
            settings_class.from_env(env)
        except ConfigError as exc:
            pytest.fail(f"{name}: {process} would not start: {exc}")


def test_k8s_containers_get_exactly_the_payrails_secrets_their_processes_use() -> None:
    for name, container in k8s_containers().items():
        given = {e["name"] for e in container.get("env", []) if "valueFrom" in e}
        assert given & set(REAL_PAYRAILS_SECRETS) == payrails_secrets_used(container), name


def test_k8s_processes_point_at_real_payrails_so_their_secret_requirement_applies() -> None:
    """Without an https base URL the start-up test above would pass on the sandbox defaults."""
    real = [
        name
        for name, container in k8s_containers().items()
        if container_environment(container).get("PAYRAILS_BASE_URL", "").startswith("https://")
    ]
    assert sorted(real) == [
        "ingress-checkout/checkout",
        "ingress-webhooks/webhooks",
        "worker/worker",
    ]


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def test_k8s_deployments_probe_the_real_ports_and_paths() -> None:
    data = configmap_data()
    for deployment in of_kind("Deployment"):
        (container,) = main_containers(deployment)
        command = tuple(container["command"])
        listeners = LISTENERS[command]
        for variable, port in listeners.values():
            assert data.get(variable, str(port)) == str(port)
        ports = [(p["name"], p["containerPort"]) for p in container["ports"]]
        assert ports == [(name, port) for name, (_, port) in listeners.items()]
        # Liveness on the public port when there is one; readiness (/readyz where the process
        # serves it, else the worker's /healthz, which checks its dependencies) on the admin one.
        public = "http" if "http" in listeners else "admin"
        readiness = "/readyz" if "/readyz" in served_paths(command, "admin") else "/healthz"
        expected = {
            "livenessProbe": ("/healthz", public),
            "startupProbe": ("/healthz", public),
            "readinessProbe": (readiness, "admin"),
        }
        for probe, (path, listener) in expected.items():
            get = container[probe]["httpGet"]
            port = port_number(container, get["port"])
            assert (get["path"], port) == (path, listeners[listener][1]), f"{command} {probe}"
            assert path in served_paths(command, listener), f"{command} {probe} {path}"
        resources = container["resources"]
        assert resources["requests"]["cpu"]
        assert resources["requests"]["memory"]
        assert resources["limits"]["memory"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_admin_servers_listen_on_the_pod_network() -> None:
    """ADMIN_HOST's default, loopback, would hide them from the kubelet and Prometheus."""
    for found in of_kind("Deployment"):
        (container,) = main_containers(found)
        assert container_environment(container).get("ADMIN_HOST") == "0.0.0.0", container["name"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions with In) selects ``labels``."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "only In is read here"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def policies_for(labels: dict[str, str]) -> list[dict[str, Any]]:
    """The NetworkPolicies restricting traffic into a pod with ``labels``."""
    return [
        policy["spec"]
        for policy in of_kind("NetworkPolicy")
        if selects(policy["spec"]["podSelector"], labels)
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
    ]


def admitting_rules(labels: dict[str, str], port: dict[str, Any]) -> list[dict[str, Any]]:
    """The ingress rules that let traffic reach the container ``port`` of such a pod."""
    return [
        rule
        for policy in policies_for(labels)
        for rule in policy.get("ingress", [])
        if not rule.get("ports")
        or any(p.get("port") in (port["name"], port["containerPort"]) for p in rule["ports"])
    ]


def test_k8s_admin_ports_admit_only_the_monitoring_namespace_and_public_ports_anyone() -> None:
    monitoring = {
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE},
        }
    }
    for found in of_kind("Deployment"):
        name = found["metadata"]["name"]
        labels = found["spec"]["template"]["metadata"]["labels"]
        assert policies_for(labels), f"no NetworkPolicy selects {name}: every port is open"
        (container,) = main_containers(found)
        for port in container["ports"]:
            rules = admitting_rules(labels, port)
            assert rules, f"{name} admits nobody to {port['name']}"
            if port["name"] == "admin":
                assert all(rule.get("from") == [monitoring] for rule in rules), name
            else:
                assert any(not rule.get("from") for rule in rules), f"{name} {port['name']}"


def test_k8s_services_pdbs_and_hpas_point_at_real_deployments() -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind("Deployment")}
    labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        (target,) = [n for n, lbl in labels.items() if selector.items() <= lbl.items()]
        (container,) = main_containers(deployments[target])
        for port in service["spec"]["ports"]:
            assert port_number(container, port["targetPort"]) in {
                p["containerPort"] for p in container["ports"]
            }
    for pdb in of_kind("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= lbl.items() for lbl in labels.values())
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in of_kind("HorizontalPodAutoscaler")}
    assert "ingress-webhooks" in scaled
    assert scaled <= deployments.keys()


@pytest.mark.parametrize("name", ["ingress-checkout", "worker"])
def test_k8s_processes_calling_payrails_mount_the_mtls_secret_read_only(name: str) -> None:
    pod = deployment(name)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName")]
    assert volume["secret"]["secretName"] == "recon-payrails-mtls"
    assert volume["secret"].get("optional", False) is False
    (container,) = main_containers(deployment(name))
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    env = env_values(container)
    assert env["PAYRAILS_CLIENT_CERT"] == mount["mountPath"] + "/tls.crt"
    assert env["PAYRAILS_CLIENT_KEY"] == mount["mountPath"] + "/tls.key"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert "recon-payrails-mtls" in (DEPLOY / "k8s" / "secrets.md").read_text()


@pytest.mark.parametrize("name", ["ingress-checkout", "worker"])
def test_k8s_processes_using_the_database_wait_for_the_migrated_schema(name: str) -> None:
    (init,) = deployment(name)["spec"]["template"]["spec"]["initContainers"]
    script = " ".join(init["command"])
    assert "alembic current" in script
    assert "(head)" in script
    assert init["env"] == [
        e for e in main_containers(deployment(name))[0]["env"] if e["name"] == "DATABASE_URL"
    ]


def test_k8s_deployments_scaled_by_an_hpa_leave_the_replica_count_to_it() -> None:
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in of_kind("HorizontalPodAutoscaler")}
    for name in scaled:
        assert "replicas" not in deployment(name)["spec"], name


def test_the_kubernetes_scrape_config_gives_each_deployment_its_compose_job_name() -> None:
    """Pods are scraped on their annotated port under job recon-<app.kubernetes.io/name>, the
    job names the compose config uses and the alerts match."""
    config = load_yaml(DEPLOY / "prometheus" / "kubernetes.yml")
    (job,) = config["scrape_configs"]
    keeps = {
        tuple(r["source_labels"]): r["regex"]
        for r in job["relabel_configs"]
        if r["action"] == "keep"
    }
    name_label = ("__meta_kubernetes_pod_label_app_kubernetes_io_name",)
    keep_annotated = keeps[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]
    (rename,) = [r for r in job["relabel_configs"] if r.get("target_label") == "job"]
    assert tuple(rename["source_labels"]) == name_label
    compose_jobs = {
        j["job_name"] for j in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    }
    keep_port = keeps[("__meta_kubernetes_pod_container_port_name",)]
    for found in of_kind("Deployment"):
        template = found["spec"]["template"]
        name = template["metadata"]["labels"]["app.kubernetes.io/name"]
        annotations = template["metadata"]["annotations"]
        assert re.fullmatch(keep_annotated, annotations["prometheus.io/scrape"])
        assert re.fullmatch(keeps[name_label], name)
        (container,) = main_containers(found)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert int(annotations["prometheus.io/port"]) == ports["admin"]
        assert [p for p in ports if re.fullmatch(keep_port, p)] == ["admin"], name
        assert rename["replacement"].replace("$1", name) in compose_jobs


def test_k8s_pods_are_annotated_with_the_path_they_serve_metrics_on() -> None:
    (job,) = load_yaml(DEPLOY / "prometheus" / "kubernetes.yml")["scrape_configs"]
    (from_annotation,) = [
        r for r in job["relabel_configs"] if r.get("target_label") == "__metrics_path__"
    ]
    assert from_annotation["source_labels"] == [
        "__meta_kubernetes_pod_annotation_prometheus_io_path"
    ]
    for found in of_kind("Deployment"):
        annotations = found["spec"]["template"]["metadata"]["annotations"]
        path = annotations.get("prometheus.io/path", job.get("metrics_path", "/metrics"))
        (container,) = main_containers(found)
        command = tuple(container["command"])
        name = found["metadata"]["name"]
        assert path in metrics_paths(command, "admin"), f"{name} {path} is no metrics"


def test_the_migration_job_is_deleted_before_each_release_is_applied() -> None:
    (job,) = of_kind("Job")
    readme = (DEPLOY / "README.md").read_text()
    assert f"kubectl -n payrails-recon delete job {job['metadata']['name']} --ignore-not-found" in (
        readme
    )


# --- Dockerfile ------------------------------------------------------------------------------
def test_dockerfile_is_multi_stage_slim_and_runs_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert exposed == {port for ls in LISTENERS.values() for _, port in ls.values()}
    assert "COPY --chown=root:root migrations" in text
    assert "alembic.ini" in text


def imported_packages(package: str) -> set[str]:
    """The top-level names the modules of ``package`` import."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_the_image_ships_the_service_without_the_demo_shop() -> None:
    """The demo shop is a client of the service: its own process, never in the image."""
    text = (DEPLOY / "Dockerfile").read_text()
    copied = {
        source.rstrip("/")
        for line in re.findall(r"^COPY (.+)$", text, re.M)
        for source in [word for word in line.split() if not word.startswith("--")][:-1]
    }
    assert {"shared", "ingress", "worker"} <= copied
    assert "demoshop" not in copied
    shipped = sorted(copied & {"shared", "ingress", "worker", "sandbox"})
    assert all("demoshop" not in imported_packages(package) for package in shipped), shipped
