"""The containerd runtime handlers a node can offer for Wasm pods (the `--runtime` choices)."""

from __future__ import annotations

from typing import Final

import attrs

RUNC_SHIM: Final = "io.containerd.runc.v2"


@attrs.frozen
class Runtime:
    """A containerd runtime handler a node can offer for Wasm pods."""

    #: The handler name: the RuntimeClass's `handler` and the key in containerd's runtimes table.
    handler: str
    #: containerd's shim (`runtime_type`).
    shim: str
    #: For the runc shim: the runc-compatible binary it calls (`BinaryName`).
    binary: str | None = None


RUNTIMES: Final = {
    "wasmhost": Runtime("wasmhost", RUNC_SHIM, "/usr/local/bin/wasmhost-runtime"),
    # crun built with a Wasm handler, as KWasm's node installer provides it.
    "crun": Runtime("crun", RUNC_SHIM, "/usr/local/bin/crun"),
    "wasmtime-shim": Runtime("wasmtime", "io.containerd.wasmtime.v1"),
    "wasmedge-shim": Runtime("wasmedge", "io.containerd.wasmedge.v1"),
}
