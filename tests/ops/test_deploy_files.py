"""The deployment files parse and declare the topology of docs/operations.md: the compose
services, the Kubernetes Deployments, Service, probes, ConfigMap and Secret, one image, and
a Dockerfile whose command and ports match; and the documentation names every environment
variable the settings read."""

import json
import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings

BASE = Path(settings.BASE_DIR)
WEB_PORT = 5002


def compose() -> dict:
    return yaml.safe_load((BASE / "docker-compose.yml").read_text())


def manifests() -> list[dict]:
    documents = []
    for path in sorted((BASE / "deploy" / "kubernetes").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


def containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (BASE / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def settings_variables() -> set[str]:
    """Every environment variable config/settings.py reads through its env_* helpers."""
    source = (BASE / "config" / "settings.py").read_text()
    return set(re.findall(r"env_(?:str|bool|int|float|list|secret)\(\s*\"([A-Z0-9_]+)\"", source))


# --- docker-compose.yml -------------------------------------------------------------------


def test_compose_declares_the_whole_topology():
    services = compose()["services"]

    assert {"postgres", "redis", "migrate", "web", "worker", "beat"} <= set(services)
    assert services["worker"]["command"][:4] == ["celery", "-A", "config", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    # web, worker and beat wait for the migration, and all run the one image
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert {services[name]["image"] for name in ("migrate", "web", "worker", "beat")} == {"iot-monitoring:latest"}


def test_compose_redis_never_evicts_and_keeps_its_queues():
    command = compose()["services"]["redis"]["command"]

    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_compose_web_is_healthchecked_on_a_probe_and_publishes_its_port():
    web = compose()["services"]["web"]

    assert re.search(r"127\.0\.0\.1:5002/(healthz|readyz)", " ".join(web["healthcheck"]["test"]))
    assert f"{WEB_PORT}:{WEB_PORT}" in web["ports"]


def test_compose_environment_sets_only_real_settings():
    environment = compose()["services"]["web"]["environment"]

    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"} <= set(environment)
    assert set(environment) <= settings_variables()
    assert environment["REDIS_URL"].startswith("redis://redis:")
    assert "@postgres:5432/" in environment["DATABASE_URL"]


# --- Kubernetes -----------------------------------------------------------------------------


def test_kubernetes_has_the_web_worker_and_a_single_beat():
    deployments = of_kind("Deployment")

    assert {"web", "worker", "beat"} <= set(deployments)
    assert deployments["beat"]["spec"]["replicas"] == 1
    assert containers(deployments["worker"])[0]["command"][:4] == ["celery", "-A", "config", "worker"]
    assert containers(deployments["beat"])[0]["command"][:4] == ["celery", "-A", "config", "beat"]
    notifications = containers(deployments["worker-notifications"])[0]["command"]
    assert notifications[notifications.index("-Q") + 1] == "notifications"
    for deployment in deployments.values():  # each selects its own pods
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_kubernetes_web_is_probed_on_healthz_and_readyz():
    web = containers(of_kind("Deployment")["web"])[0]

    assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": WEB_PORT}
    assert web["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": WEB_PORT}
    assert WEB_PORT in [port["containerPort"] for port in web["ports"]]


def test_kubernetes_service_targets_the_web_pods_port():
    service = of_kind("Service")["web"]
    web = of_kind("Deployment")["web"]

    assert service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
    assert {"port": WEB_PORT, "targetPort": WEB_PORT} in [
        {"port": port["port"], "targetPort": port["targetPort"]} for port in service["spec"]["ports"]
    ]
    beat_labels = of_kind("Deployment")["beat"]["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= beat_labels.items()  # only web pods get traffic


def test_every_workload_reads_the_configmap_and_the_secret_and_runs_one_image():
    config_maps, secrets = of_kind("ConfigMap"), of_kind("Secret")
    workloads = [*of_kind("Deployment").values(), *of_kind("Job").values()]
    images = set()

    for workload in workloads:
        for container in containers(workload):
            sources = container["envFrom"]
            assert {s["configMapRef"]["name"] for s in sources if "configMapRef" in s} <= set(config_maps)
            assert {s["secretRef"]["name"] for s in sources if "secretRef" in s} <= set(secrets)
            assert len(sources) == 2, workload["metadata"]["name"]
            images.add(container["image"])

    assert images == {"iot-monitoring:latest"} == {compose()["services"]["web"]["image"]}
    assert of_kind("Job")["monitoring-migrate"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "manage.py", "migrate", "--noinput",
    ]  # fmt: skip
    variables = set(next(iter(config_maps.values()))["data"]) | set(next(iter(secrets.values()))["stringData"])
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"} <= variables <= settings_variables()


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_image_that_serves_the_web_port():
    instructions = dockerfile_instructions()
    by_name: dict[str, list[str]] = {}
    for name, arguments in instructions:
        by_name.setdefault(name, []).append(arguments)

    assert by_name["FROM"] == ["python:3.11-slim"]
    assert any("-r requirements.txt -c constraints.txt" in run for run in by_name["RUN"])
    assert any("collectstatic --noinput" in run for run in by_name["RUN"])
    assert by_name["USER"][-1] not in ("root", "0")
    exposed = {int(port) for line in by_name["EXPOSE"] for port in line.split()}
    command = json.loads(by_name["CMD"][-1])
    assert command[0] == "daphne" and command[-1] == "config.asgi:application"
    assert int(command[command.index("-p") + 1]) == WEB_PORT and WEB_PORT in exposed
    assert "tcp:port=8080" in command and 8080 in exposed
    # the last instructions run as the unprivileged user
    assert [name for name, _ in instructions][-3:] == ["USER", "EXPOSE", "CMD"]


# --- docs/operations.md ----------------------------------------------------------------------


def test_operations_doc_names_every_environment_variable_the_settings_read():
    doc = (BASE / "docs" / "operations.md").read_text()

    missing = sorted(name for name in settings_variables() if f"`{name}`" not in doc)

    assert len(settings_variables()) > 50  # the scan found the settings
    assert missing == [], f"add these to docs/operations.md: {missing}"


@pytest.mark.parametrize("heading", ["## Topology", "## Environment variables", "## Upgrades", "## Watchdog"])
def test_operations_doc_has_its_sections(heading):
    assert f"\n{heading}\n" in (BASE / "docs" / "operations.md").read_text()
