"""`wasmhost k8s`: manifests valid for two Kubernetes versions (kubernetes-validate), handler
names that agree with the containerd snippet, and bad input refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from kubernetes_validate.utils import all_versions

from tests.conftest import run_cli
from wasmhost.k8s import RUNTIMES
from wasmhost.k8s.emit import dump_all

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The oldest and the newest schemas the installed kubernetes-validate ships (1.25.0 and 1.37.0
#: with kubernetes-validate 1.37).
_SHIPPED = sorted(set(all_versions()), key=lambda v: tuple(map(int, v.split("."))))
KUBERNETES_VERSIONS = [_SHIPPED[0], _SHIPPED[-1]]
IMAGE = "oci://ghcr.io/example/http-hello:v1"


def _manifests(*flags: str) -> list[dict[str, Any]]:
    done = run_cli("k8s", "manifests", IMAGE, "--name", "hello", "--port", "8080", *flags)
    assert done.returncode == 0, done.stderr
    return list(yaml.safe_load_all(done.stdout))


def _containerd_runtimes(snippet: str) -> dict[str, Any]:
    runtimes: dict[str, Any] = tomllib.loads(snippet)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    return runtimes


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_manifests_validate_strictly(version: str, runtime: str) -> None:
    documents = _manifests("--runtime", runtime, "--replicas", "3", "--hpa", "2:10", "--probe-path", "/healthz")
    assert [d["kind"] for d in documents] == ["RuntimeClass", "Deployment", "Service", "HorizontalPodAutoscaler"]
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_validator_catches_a_wrong_field(version: str) -> None:
    """The check above can fail: a misspelt field is refused in strict mode."""
    deployment = _manifests()[1]
    deployment["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_the_deployment_carries_what_the_issue_asks() -> None:
    runtime_class, deployment, service = _manifests("--replicas", "2")
    assert runtime_class["scheduling"]["nodeSelector"] == {"wasmhost/wasmhost": "true"}
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]
    assert pod["metadata"]["annotations"]["module.wasm.image/variant"] == "compat"
    assert pod["spec"]["runtimeClassName"] == runtime_class["metadata"]["name"] == "wasmhost"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/example/http-hello:v1"
    assert container["resources"]["limits"] == {"cpu": "100m", "memory": "128Mi"}
    assert container["readinessProbe"]["tcpSocket"] == container["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"] == pod["metadata"]["labels"]


def test_node_selector_can_name_kwasm_provisioned_nodes() -> None:
    runtime_class = _manifests("--runtime", "crun", "--node-selector", "kwasm.sh/kwasm-provisioned=worker-1")[0]
    assert runtime_class["handler"] == "crun"
    assert runtime_class["scheduling"]["nodeSelector"] == {"kwasm.sh/kwasm-provisioned": "worker-1"}


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_runtime_class_handler_matches_the_containerd_snippet(runtime: str, tmp_path: Path) -> None:
    done = run_cli("k8s", "manifests", IMAGE, "--name", "hello", "--port", "80", "--runtime", runtime, "-o", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "hello.yaml"), str(tmp_path / "hello-containerd.toml")]
    runtime_class = next(yaml.safe_load_all((tmp_path / "hello.yaml").read_text()))
    runtimes = _containerd_runtimes((tmp_path / "hello-containerd.toml").read_text())
    assert list(runtimes) == [runtime_class["handler"]]
    printed = run_cli("k8s", "containerd-config", "--runtime", runtime)
    assert _containerd_runtimes(printed.stdout) == runtimes
    entry = runtimes[runtime_class["handler"]]
    if runtime in ("wasmhost", "crun"):  # runc-compatible binaries under containerd's runc shim
        assert entry["runtime_type"] == "io.containerd.runc.v2"
        assert Path(entry["options"]["BinaryName"]).name == {"wasmhost": "wasmhost-runtime", "crun": "crun"}[runtime]
    else:
        assert entry["runtime_type"].startswith("io.containerd.") and "options" not in entry


def test_runtime_path_goes_into_the_snippet() -> None:
    done = run_cli("k8s", "containerd-config", "--runtime-path", "/opt/wasm bin/wasmhost-runtime")
    assert _containerd_runtimes(done.stdout)["wasmhost"]["options"]["BinaryName"] == "/opt/wasm bin/wasmhost-runtime"


def test_no_autoscaler_unless_asked() -> None:
    kinds = [d["kind"] for d in _manifests()]
    assert kinds == ["RuntimeClass", "Deployment", "Service"]
    autoscaler = _manifests("--hpa", "1:4", "--hpa-cpu", "60")[3]
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (1, 4)
    assert autoscaler["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([IMAGE, "--name", "Hello_App", "--port", "80"], "--name Hello_App: must be at most 63 lowercase"),
        ([IMAGE, "--name", "a" * 64, "--port", "80"], "must be at most 63 lowercase"),
        ([IMAGE, "--name", "app", "--port", "70000"], "--port 70000: must be between 1 and 65535"),
        ([IMAGE, "--name", "app", "--port", "0"], "--port 0: must be between 1 and 65535"),
        (["oci://ghcr.io/Bad/Name:v1", "--name", "app", "--port", "80"], "Bad/Name:v1: repository names must be"),
        (["oci://ghcr.io/a/b:bad tag", "--name", "app", "--port", "80"], "image reference"),
        ([IMAGE, "--name", "app", "--port", "80", "--replicas", "-1"], "--replicas -1: must not be negative"),
        ([IMAGE, "--name", "app", "--port", "80", "--hpa", "5:2"], "--hpa 5:2: need 1 <= MIN <= MAX"),
        ([IMAGE, "--name", "app", "--port", "80", "--hpa", "lots"], "--hpa lots: expected MIN:MAX"),
        ([IMAGE, "--name", "app", "--port", "80", "--memory", "lots"], "--memory lots: not a Kubernetes quantity"),
        ([IMAGE, "--name", "app", "--port", "80", "--node-selector", "a b=c"], "--node-selector a b=c"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(args: list[str], message: str, tmp_path: Path) -> None:
    done = run_cli("k8s", "manifests", *args, "-o", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("wasmhost: "), done.stderr
    assert message in done.stderr
    assert done.stdout == "" and not (tmp_path / "out").exists()


def test_runtime_path_is_refused_for_shims_without_a_binary() -> None:
    done = run_cli("k8s", "containerd-config", "--runtime", "wasmtime-shim", "--runtime-path", "/x")
    assert (done.returncode, done.stderr) == (
        2,
        "wasmhost: --runtime-path: the io.containerd.wasmtime.v1 shim takes no runtime binary\n",
    )


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.lists(st.dictionaries(st.text(), _json, max_size=5), max_size=3))
@example([{"k" * 1100: {"v": ["x" * 2000, {"y" * 1030: None}]}, "on": [[], {}]}, {}])  # long keys, reserved words
def test_the_emitter_round_trips_through_a_yaml_reader(documents: list[dict[str, Any]]) -> None:
    assert list(yaml.safe_load_all(dump_all(documents))) == documents
