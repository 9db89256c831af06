"""`wasmhost k8s manifests|containerd-config`: argument parsing and output only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .runtimes import RUNTIMES

if TYPE_CHECKING:
    from .manifests import App

# The manifests (and the oci reference parser they use) are imported by the handlers: every
# start of the CLI registers these parsers.


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `k8s` and its subcommands to a CLI's subparsers."""
    k8s = subparsers.add_parser(
        "k8s",
        help="Kubernetes manifests and containerd configuration for a Wasm image",
        description="Write what a Kubernetes cluster needs to run a Wasm image through a RuntimeClass.",
    )
    commands = k8s.add_subparsers(dest="k8s_command", metavar="COMMAND", required=True)
    generate = commands.add_parser(
        "manifests",
        help="RuntimeClass, Deployment, Service (and HorizontalPodAutoscaler) as YAML",
        description="Print the manifests as one YAML stream, or write them and the containerd snippet to DIR.",
    )
    generate.add_argument("image", metavar="REF", help="the image, [oci://]HOST/REPO[:TAG][@sha256:...]")
    generate.add_argument("--name", required=True, help="name of the Deployment and Service (a DNS label)")
    generate.add_argument("--port", required=True, type=int, help="the port the guest listens on")
    generate.add_argument("--replicas", type=int, default=1, help="pods to run (default 1)")
    _runtime_options(generate)
    generate.add_argument("--cpu", default="100m", help="CPU request and limit per pod (default 100m)")
    generate.add_argument("--memory", default="128Mi", help="memory request and limit per pod (default 128Mi)")
    generate.add_argument("--probe-path", metavar="PATH", help="probe with HTTP GET PATH (default: a TCP connect)")
    generate.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label of the nodes that offer the runtime (default wasmhost/HANDLER=true)",
    )
    generate.add_argument("--hpa", metavar="MIN:MAX", help="add a HorizontalPodAutoscaler scaling MIN..MAX pods")
    generate.add_argument("--hpa-cpu", type=int, default=80, metavar="PERCENT", help="its CPU target (default 80)")
    generate.add_argument(
        "-o", "--output", type=Path, metavar="DIR", help="write NAME.yaml and NAME-containerd.toml to DIR"
    )
    generate.set_defaults(handler=_manifests)
    snippet = commands.add_parser(
        "containerd-config",
        help="the containerd config.toml lines that register the runtime handler",
        description="Print the containerd (config version 2) runtime table for a RuntimeClass handler.",
    )
    _runtime_options(snippet)
    snippet.set_defaults(handler=_containerd_config)


def _runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime", choices=sorted(RUNTIMES), default="wasmhost", help="the node's Wasm runtime (default wasmhost)"
    )
    parser.add_argument(
        "--runtime-path", metavar="PATH", help="the runtime binary on the nodes (runc-shim runtimes only)"
    )


def _app(ns: argparse.Namespace) -> App:
    from .manifests import App, Autoscale

    autoscale = None
    if ns.hpa is not None:
        low, sep, high = ns.hpa.partition(":")
        if not (sep and low.isdigit() and high.isdigit()):
            raise ConfigError(f"--hpa {ns.hpa}: expected MIN:MAX, e.g. 2:10")
        autoscale = Autoscale(int(low), int(high), ns.hpa_cpu)
    selector = {}
    for spec in ns.node_selector:
        key, sep, value = spec.partition("=")
        if not sep:
            raise ConfigError(f"--node-selector {spec}: expected KEY=VALUE")
        selector[key] = value
    return App(
        ns.image,
        ns.name,
        ns.port,
        replicas=ns.replicas,
        runtime=RUNTIMES[ns.runtime],
        cpu=ns.cpu,
        memory=ns.memory,
        probe_path=ns.probe_path,
        node_selector=selector,
        autoscale=autoscale,
    )


def _manifests(ns: argparse.Namespace) -> int:
    from .emit import dump_all
    from .manifests import containerd_config, manifests

    app = _app(ns)
    text = dump_all(manifests(app))
    snippet = containerd_config(app.runtime, ns.runtime_path)
    if ns.output is None:
        sys.stdout.write(text)
        return 0
    files = {ns.output / f"{app.name}.yaml": text, ns.output / f"{app.name}-containerd.toml": snippet}
    try:
        ns.output.mkdir(parents=True, exist_ok=True)
        for path, content in files.items():
            path.write_text(content)
    except OSError as exc:
        raise ConfigError(f"--output {ns.output}: {exc.strerror or 'cannot write'}") from None
    for path in files:
        print(path)
    return 0


def _containerd_config(ns: argparse.Namespace) -> int:
    from .manifests import containerd_config

    sys.stdout.write(containerd_config(RUNTIMES[ns.runtime], ns.runtime_path))
    return 0
