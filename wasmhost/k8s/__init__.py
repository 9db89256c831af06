"""Kubernetes: manifests that run a Wasm image through a RuntimeClass, and the containerd
configuration that gives a node the matching runtime handler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attribute_loader, names

if TYPE_CHECKING:
    from .emit import dump_all
    from .manifests import App, Autoscale, containerd_config, manifests
    from .runtimes import RUNTIMES, Runtime

# Loaded on first use: the CLI registers `k8s` on every start but builds manifests rarely.
__getattr__ = attribute_loader(
    __name__,
    {
        **names("emit", "dump_all"),
        **names("manifests", "App", "Autoscale", "containerd_config", "manifests"),
        **names("runtimes", "RUNTIMES", "Runtime"),
    },
)

__all__ = ["RUNTIMES", "App", "Autoscale", "Runtime", "containerd_config", "dump_all", "manifests"]
