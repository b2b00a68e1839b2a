"""Schema checks of the Kubernetes manifests and a lint of the Dockerfile."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REPO_DIR, require_tool

K8S_DIR = REPO_DIR / "k8s"
KUBERNETES_VERSION = "1.30.0"
DEV_LOCK_HINT = "install the dev lock with pip install -r requirements-dev.lock"


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def load_resources() -> dict[str, dict[str, Any]]:
    """Load every manifest file, keyed by kind."""
    resources: dict[str, dict[str, Any]] = {}
    for path in manifest_files():
        for document in yaml.safe_load_all(path.read_text()):
            resources[document["kind"]] = document
    return resources


def render(tmp_path: Path) -> list[Path]:
    """Render the kustomization with kubectl, or fall back to the plain files."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return manifest_files()

    result = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize failed:\n{result.stderr}"
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(result.stdout)
    return [rendered]


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return load_resources()


@pytest.fixture(scope="module")
def container(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return resources["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def test_manifests_match_schema(tmp_path: Path) -> None:
    validator = require_tool("kubernetes-validate", DEV_LOCK_HINT)
    files = render(tmp_path)

    result = subprocess.run(
        [validator, "--strict", "-k", KUBERNETES_VERSION, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count(" passed for resource ") == 5, output


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())

    listed = sorted(kustomization["resources"])

    assert listed == [p.name for p in manifest_files()]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = require_tool("hadolint", DEV_LOCK_HINT)

    result = subprocess.run(
        [hadolint, "--failure-threshold", "error", str(REPO_DIR / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_deployment_runs_one_pod(resources: dict[str, dict[str, Any]]) -> None:
    spec = resources["Deployment"]["spec"]

    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    assert resources["PersistentVolumeClaim"]["spec"]["accessModes"] == [
        "ReadWriteOnce"
    ]


def test_deployment_disables_service_links(
    resources: dict[str, dict[str, Any]],
) -> None:
    pod = resources["Deployment"]["spec"]["template"]["spec"]

    # A Service named llmtap would otherwise inject LLMTAP_PORT and friends.
    assert pod["enableServiceLinks"] is False


def test_container_probes(container: dict[str, Any]) -> None:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    ready = container["readinessProbe"]["httpGet"]
    live = container["livenessProbe"]["httpGet"]

    assert ports == {"entry": 8786, "dashboard": 3100}
    assert (ports[ready["port"]], ready["path"]) == (8786, "/_llmtap/health")
    assert (ports[live["port"]], live["path"]) == (3100, "/healthz")
    assert container["startupProbe"]["httpGet"] == live


def test_container_image_and_volume(
    resources: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    volumes = resources["Deployment"]["spec"]["template"]["spec"]["volumes"]
    claim = resources["PersistentVolumeClaim"]["metadata"]["name"]

    assert container["image"] == "llmtap:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert volumes == [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    assert "memory" in container["resources"]["limits"]


def test_container_env_sources(
    resources: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    config_map = resources["ConfigMap"]["metadata"]["name"]
    secret = resources["Secret"]["metadata"]["name"]

    assert container["envFrom"] == [
        {"configMapRef": {"name": config_map}},
        {"secretRef": {"name": secret, "optional": True}},
    ]


def test_secret_holds_no_password(resources: dict[str, dict[str, Any]]) -> None:
    secret = resources["Secret"]

    assert "data" not in secret
    assert "stringData" not in secret


def test_service_ports(resources: dict[str, dict[str, Any]]) -> None:
    spec = resources["Service"]["spec"]

    assert spec["type"] == "ClusterIP"
    assert sorted(port["port"] for port in spec["ports"]) == [3100, 8786]
