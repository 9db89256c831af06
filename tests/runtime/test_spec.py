"""What the runtime reads from config.json, without I/O: Wasm or not, network namespace, cgroup."""

from __future__ import annotations

from typing import Any

import pytest

from wasmhost.oci import BundleError
from wasmhost.runtime.cgroups import Resources, hierarchies
from wasmhost.runtime.spec import NetworkNamespace, parse_spec


def _config(args: list[str], **extra: Any) -> dict[str, Any]:
    return {"ociVersion": "1.0.2", "process": {"args": args}, **extra}


@pytest.mark.parametrize(
    ("config", "wasm"),
    [
        (_config(["/app.wasm"]), True),
        (_config(["server.wasm", "--port", "80"]), True),
        (_config(["/app"], annotations={"module.wasm.image/variant": "compat"}), True),
        (_config(["/app"], annotations={"run.oci.handler": "wasm"}), True),
        (_config(["/app"], annotations={"module.wasm.image/variant": "compat-smart"}), False),
        (_config(["/bin/true"]), False),
        (_config(["/wasm/sh"]), False),
    ],
)
def test_which_bundles_are_wasm(config: dict[str, Any], wasm: bool) -> None:
    assert parse_spec(config, "config.json").is_wasm is wasm


@pytest.mark.parametrize(
    ("namespaces", "network"),
    [
        ([{"type": "pid"}, {"type": "mount"}], None),
        ([{"type": "network"}], NetworkNamespace(None)),
        ([{"type": "network", "path": ""}], NetworkNamespace(None)),
        ([{"type": "network", "path": "/var/run/netns/cni-1"}], NetworkNamespace("/var/run/netns/cni-1")),
    ],
)
def test_the_network_namespace(namespaces: list[dict[str, str]], network: NetworkNamespace | None) -> None:
    assert parse_spec(_config(["/a.wasm"], linux={"namespaces": namespaces}), "c").network == network


@pytest.mark.parametrize(
    ("linux", "path", "resources"),
    [
        ({}, None, Resources()),
        ({"cgroupsPath": "/kubepods/pod1/c1"}, "/kubepods/pod1/c1", Resources()),
        ({"resources": {"memory": {"limit": 1 << 27}}}, None, Resources(memory=1 << 27)),
        ({"resources": {"memory": {"limit": -1}, "cpu": {"quota": -1}}}, None, Resources()),
        ({"resources": {"cpu": {"quota": 20000, "period": 100000}}}, None, Resources(None, 20000, 100000)),
        ({"resources": {"memory": None, "cpu": {"quota": True}}}, None, Resources()),
    ],
)
def test_cgroup_and_limits(linux: dict[str, Any], path: str | None, resources: Resources) -> None:
    spec = parse_spec(_config(["/a.wasm"], linux=linux), "c")
    assert (spec.cgroups_path, spec.resources) == (path, resources)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"process": {"args": []}}, "process.args must name the program to run"),
        ({}, "process is missing or not an object"),
        (_config(["/a.wasm"], annotations={"k": 1}), "annotations must map strings to strings"),
        (_config(["/a.wasm"], linux=[]), "linux must be an object"),
        (_config(["/a.wasm"], linux={"resources": {"memory": 5}}), "memory must be an object"),
        (_config(["/a.wasm"], linux={"namespaces": [{"type": "network", "path": 3}]}), "path must be a string"),
    ],
)
def test_malformed_configs_name_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        parse_spec(config, "b/config.json")


def test_cgroup_hierarchies_from_mounts() -> None:
    mounts = (
        "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
        "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
        "cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0\n"
        "cgroup /sys/fs/cgroup/memory cgroup ro,relatime,memory 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"
    )
    assert [(str(path), v2) for path, v2 in hierarchies(mounts)] == [
        ("/sys/fs/cgroup/cpu", False),
        ("/sys/fs/cgroup/unified", True),
    ]
