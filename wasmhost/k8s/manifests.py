"""The Kubernetes objects that run one Wasm image, and the containerd runtime they need.

Pure data: `manifests(app)` returns the objects as dicts, `containerd_config` the TOML
snippet; the CLI writes them. The RuntimeClass `handler` and the containerd runtime table
come from the same `Runtime`, so the two cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ..errors import ConfigError
from ..oci import media
from ..oci.errors import InvalidReference
from ..oci.reference import SCHEME, parse
from .emit import quote
from .runtimes import RUNTIMES, Runtime

#: RFC 1035 label: what a Service name must be (Deployments accept more; the stricter rule serves both).
_DNS_LABEL: Final = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUANTITY: Final = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
_LABEL_KEY: Final = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def _check_name(_: object, __: object, name: str) -> None:
    if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
        raise ConfigError(
            f"--name {name}: must be at most 63 lowercase letters, digits and '-', starting with a letter"
        )


def _check_port(_: object, __: object, port: int) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: must be between 1 and 65535")


def _check_image(_: object, __: object, image: str) -> None:
    try:
        parse(image)
    except InvalidReference as exc:
        raise ConfigError(f"image reference {exc}") from None


def _check_quantity(flag: str) -> Any:
    def check(_: object, __: object, value: str) -> None:
        if not _QUANTITY.fullmatch(value):
            raise ConfigError(f"{flag} {value}: not a Kubernetes quantity (e.g. 250m, 128Mi)")

    return check


def _check_selector(_: object, __: object, selector: Mapping[str, str]) -> None:
    for key, value in selector.items():
        if not _LABEL_KEY.fullmatch(key) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise ConfigError(f"--node-selector {key}={value}: not a valid label")


def _without_scheme(ref: str) -> str:
    return ref.removeprefix(SCHEME)


@attrs.frozen
class Autoscale:
    """A HorizontalPodAutoscaler's range and CPU target."""

    minimum: int
    maximum: int
    cpu_percent: int = 80

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ConfigError(f"--hpa {self.minimum}:{self.maximum}: need 1 <= MIN <= MAX")
        if not 1 <= self.cpu_percent <= 100:
            raise ConfigError(f"--hpa-cpu {self.cpu_percent}: must be a percentage between 1 and 100")


@attrs.frozen
class App:
    """One Wasm service: what `wasmhost k8s manifests` is told."""

    #: The image, `[oci://]HOST/REPO[:TAG][@DIGEST]`; Kubernetes gets it without the scheme.
    image: str = attrs.field(converter=_without_scheme, validator=_check_image)
    name: str = attrs.field(validator=_check_name)
    port: int = attrs.field(validator=_check_port)
    replicas: int = attrs.field(default=1)
    runtime: Runtime = RUNTIMES["wasmhost"]
    cpu: str = attrs.field(default="100m", validator=_check_quantity("--cpu"))
    memory: str = attrs.field(default="128Mi", validator=_check_quantity("--memory"))
    #: HTTP path for the probes; None probes the TCP port (any server guest).
    probe_path: str | None = None
    #: Nodes that offer the runtime; by default the label the docs tell you to set.
    node_selector: Mapping[str, str] = attrs.field(factory=dict, validator=_check_selector)
    autoscale: Autoscale | None = None

    @replicas.validator
    def _check_replicas(self, _: object, replicas: int) -> None:
        if replicas < 0:
            raise ConfigError(f"--replicas {replicas}: must not be negative")

    @property
    def nodes(self) -> dict[str, str]:
        return dict(self.node_selector) or {f"wasmhost/{self.runtime.handler}": "true"}


def manifests(app: App) -> list[dict[str, Any]]:
    """RuntimeClass, Deployment, Service and (with `app.autoscale`) a HorizontalPodAutoscaler."""
    objects = [_runtime_class(app), _deployment(app), _service(app)]
    if app.autoscale is not None:
        objects.append(_autoscaler(app, app.autoscale))
    return objects


def _runtime_class(app: App) -> dict[str, Any]:
    handler = app.runtime.handler
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": handler},
        "handler": handler,
        "scheduling": {"nodeSelector": app.nodes},
    }


def _probe(app: App, initial_delay: int) -> dict[str, Any]:
    check: dict[str, Any] = (
        {"tcpSocket": {"port": "http"}}
        if app.probe_path is None
        else {"httpGet": {"path": app.probe_path, "port": "http"}}
    )
    return {**check, "initialDelaySeconds": initial_delay, "periodSeconds": 10, "timeoutSeconds": 2}


def _deployment(app: App) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": app.name}
    container = {
        "name": app.name,
        "image": app.image,
        "ports": [{"name": "http", "containerPort": app.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": app.cpu, "memory": app.memory},
            "limits": {"cpu": app.cpu, "memory": app.memory},
        },
        "readinessProbe": _probe(app, 1),
        "livenessProbe": _probe(app, 5),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app.name, "labels": labels},
        "spec": {
            "replicas": app.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": dict(media.WASM_ANNOTATIONS)},
                "spec": {"runtimeClassName": app.runtime.handler, "containers": [container]},
            },
        },
    }


def _service(app: App) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app.name, "labels": {"app.kubernetes.io/name": app.name}},
        "spec": {
            "selector": {"app.kubernetes.io/name": app.name},
            "ports": [{"name": "http", "port": app.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _autoscaler(app: App, autoscale: Autoscale) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": app.name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app.name},
            "minReplicas": autoscale.minimum,
            "maxReplicas": autoscale.maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": autoscale.cpu_percent},
                    },
                }
            ],
        },
    }


def containerd_config(runtime: Runtime, binary: str | None = None) -> str:
    """The `config.toml` (version 2, containerd 1.6/1.7) lines that register `runtime`'s handler."""
    table = f'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{quote(runtime.handler)}'
    lines = [
        f"# containerd runtime handler {runtime.handler!r}, for RuntimeClass {runtime.handler!r}",
        f"[{table}]",
        f"  runtime_type = {quote(runtime.shim)}",
    ]
    if binary is not None and runtime.binary is None:
        raise ConfigError(f"--runtime-path: the {runtime.shim} shim takes no runtime binary")
    path = binary or runtime.binary
    if path is not None:
        lines += [f"[{table}.options]", f"  BinaryName = {quote(path)}"]
    return "\n".join(lines) + "\n"
