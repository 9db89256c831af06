"""`wasmhost-runtime`: an OCI runtime with runc's command line, for containerd, Podman and CRI-O.

Wasm bundles run under wasmhost; any other bundle is handed to runc (or crun), so one runtime
can serve a whole node.
"""
