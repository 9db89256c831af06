"""Kubernetes: manifests that run a Wasm image through a RuntimeClass, and the containerd
configuration that gives a node the matching runtime handler."""

from .emit import dump_all
from .manifests import RUNTIMES, App, Autoscale, Runtime, containerd_config, manifests

__all__ = ["RUNTIMES", "App", "Autoscale", "Runtime", "containerd_config", "dump_all", "manifests"]
