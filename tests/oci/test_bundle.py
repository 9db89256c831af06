"""Runtime bundles: ours round-trip, and the seed article's hand-edited crun config reads too."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmhost.oci import Bundle, BundleError, Mount, read_bundle, write_bundle
from wasmhost.oci.bundle import DEFAULT_ENV

SEED_CONFIG = Path(__file__).parent / "data" / "crun-config.json"


def test_write_then_read(module: bytes, tmp: Path) -> None:
    data = tmp / "data"
    data.mkdir()
    config_path = write_bundle(
        module,
        tmp / "bundle",
        args=["--port", "8080"],
        env={"RUST_LOG": "info"},
        mounts=[Mount("/data", data, read_only=True), Mount("/scratch", tmp / "scratch")],
    )
    assert config_path == tmp / "bundle" / "config.json"
    wasm = tmp / "bundle" / "rootfs" / "app.wasm"
    assert wasm.read_bytes() == module and wasm.stat().st_mode & 0o777 == 0o755
    config = json.loads(config_path.read_text())
    assert config["process"]["args"] == ["/app.wasm", "--port", "8080"]
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert config["annotations"] == {"module.wasm.image/variant": "compat", "run.oci.handler": "wasm"}
    assert "network" not in [ns["type"] for ns in config["linux"]["namespaces"]]
    assert read_bundle(tmp / "bundle") == Bundle(
        module=wasm,
        args=("/app.wasm", "--port", "8080"),
        env=(
            ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ("TERM", "xterm"),
            ("RUST_LOG", "info"),
        ),
        cwd="/",
        mounts=(
            Mount("/", tmp / "bundle" / "rootfs", read_only=True),
            Mount("/data", data, read_only=True),
            Mount("/scratch", tmp / "scratch", read_only=False),
        ),
    )


def test_the_seed_crun_config_reads(module: bytes, tmp: Path) -> None:
    """The config.json of the seed article's `crun run` example, module at /http-server.wasm."""
    shutil.copy(SEED_CONFIG, tmp / "config.json")
    (tmp / "rootfs").mkdir()
    (tmp / "rootfs" / "http-server.wasm").write_bytes(module)
    bundle = read_bundle(tmp)
    assert bundle.module == (tmp / "rootfs" / "http-server.wasm").resolve()
    assert bundle.args == ("/http-server.wasm",)
    assert dict(bundle.env)["TERM"] == "xterm"
    assert bundle.cwd == "/"
    assert bundle.mounts == (Mount("/", tmp / "rootfs", read_only=True),)


def test_relative_module_and_bind_sources(module: bytes, tmp: Path) -> None:
    config = json.loads(SEED_CONFIG.read_text())
    config["process"].update(args=["server.wasm", "-v"], cwd="/srv")
    config["root"] = {"path": "root"}
    config["mounts"].append({"destination": "/data", "source": "data", "options": ["rbind", "ro"]})
    (tmp / "config.json").write_text(json.dumps(config))
    (tmp / "root" / "srv").mkdir(parents=True)
    (tmp / "root" / "srv" / "server.wasm").write_bytes(module)
    bundle = read_bundle(tmp)
    assert bundle.module == (tmp / "root" / "srv" / "server.wasm").resolve()
    assert (bundle.args, bundle.cwd) == (("server.wasm", "-v"), "/srv")
    assert bundle.mounts == (Mount("/", tmp / "root", read_only=False), Mount("/data", tmp / "data", read_only=True))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda c: c.pop("process"), "process is missing or not an object"),
        (lambda c: c["process"].update(args=[]), "process.args is empty"),
        (lambda c: c["process"].update(args="/app.wasm"), "process.args is not a list of strings"),
        (lambda c: c["process"].update(cwd="srv"), "process.cwd must be an absolute path"),
        (lambda c: c["process"].update(args=["/missing.wasm"]), "module /missing.wasm not found"),
        (lambda c: c["process"].update(args=["/notes.txt"]), "not a WebAssembly module (bad magic)"),
        (lambda c: c["process"].update(args=["/escape.wasm"]), "resolves outside the root file system"),
        (lambda c: c["process"].update(args=["/../../outside.wasm"]), "resolves outside the root file system"),
    ],
)
def test_bad_bundles_are_refused_by_name(module: bytes, tmp: Path, change: object, why: str) -> None:
    config = json.loads(SEED_CONFIG.read_text())
    change(config)  # type: ignore[operator]
    (tmp / "config.json").write_text(json.dumps(config))
    (tmp / "rootfs").mkdir()
    (tmp / "rootfs" / "notes.txt").write_text("hello")
    (tmp / "outside.wasm").write_bytes(module)
    (tmp / "rootfs" / "escape.wasm").symlink_to(tmp / "outside.wasm")
    with pytest.raises(BundleError) as caught:
        read_bundle(tmp)
    assert caught.value.what == str(tmp / "config.json")
    assert why in caught.value.why


def test_missing_or_broken_config(tmp: Path) -> None:
    with pytest.raises(BundleError, match=r"config\.json: No such file or directory"):
        read_bundle(tmp)
    (tmp / "config.json").write_text("[]")
    with pytest.raises(BundleError, match="not a JSON object"):
        read_bundle(tmp)


def test_write_bundle_refuses_non_modules(tmp: Path) -> None:
    (tmp / "app.txt").write_text("hello")
    with pytest.raises(BundleError, match=r"app.txt: not a WebAssembly module \(bad magic\)$"):
        write_bundle(tmp / "app.txt", tmp / "bundle")
    assert not (tmp / "bundle").exists()


@settings(max_examples=40, deadline=None)
@given(
    args=st.lists(st.text(max_size=12), max_size=4),
    env=st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), st.text(max_size=12), max_size=4),
)
def test_bundle_round_trips_any_args_and_env(module: bytes, args: list[str], env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        write_bundle(module, Path(directory), args=args, env=env)
        bundle = read_bundle(Path(directory))
    assert bundle.args == ("/app.wasm", *args)
    assert dict(bundle.env) == {**DEFAULT_ENV, **env}
