"""wasmhost: run WebAssembly (WASI) workloads from Python, the way the cloud-native Wasm stack does."""

from .errors import (
    ConfigError,
    GuestTrap,
    HostFailure,
    Interrupted,
    LinkError,
    ModuleError,
    Timeout,
    WasmhostError,
)
from .host import Host, Limits, Preopen, Stdio
from .instance import Instance
from .module import GuestKind, Module
from .net.policy import Network, PortMapping, Rule

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "GuestKind",
    "GuestTrap",
    "Host",
    "HostFailure",
    "Instance",
    "Interrupted",
    "Limits",
    "LinkError",
    "Module",
    "ModuleError",
    "Network",
    "PortMapping",
    "Preopen",
    "Rule",
    "Stdio",
    "Timeout",
    "WasmhostError",
    "__version__",
]
