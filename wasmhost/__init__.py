"""wasmhost: run WebAssembly (WASI) workloads from Python, the way the cloud-native Wasm stack does."""

from typing import TYPE_CHECKING

from ._lazy import attribute_loader, names
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

if TYPE_CHECKING:
    from .host import Host, Limits, Preopen, Stdio
    from .instance import Instance, State
    from .module import GuestKind, Module
    from .net.policy import Network, PortMapping, Rule
    from .workers import Workers

# Loaded on first use (wasmtime, asyncio, attrs): `import wasmhost` alone stays cheap.
__getattr__ = attribute_loader(
    __name__,
    {
        **names("host", "Host", "Limits", "Preopen", "Stdio"),
        **names("instance", "Instance", "State"),
        **names("module", "GuestKind", "Module"),
        **names("net.policy", "Network", "PortMapping", "Rule"),
        **names("workers", "Workers"),
    },
)

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
    "State",
    "Stdio",
    "Timeout",
    "WasmhostError",
    "Workers",
    "__version__",
]
