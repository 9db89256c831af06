#!/usr/bin/env bash
# Build every guest crate in rust-guests/ for WASI preview1 and collect the
# modules in rust-guests/out/<crate>.wasm (http-hello is also copied into the
# Python package as wasmhost/_demo/http-hello.wasm).
#
# Toolchain choice (first match wins):
#   1. WASM_TARGET / CARGO from the environment, if set;
#   2. rustup with target wasm32-wasip1 installed;
#   3. rustup with target wasm32-wasi installed (older toolchains);
#   4. Debian's /usr/bin/cargo + /usr/bin/rustc with target wasm32-wasi
#      (packages rustc, cargo, libstd-rust-dev-wasm32).
# The build is offline: guests use std only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
OUT="$HERE/out"
DEMO_DIR="$REPO/wasmhost/_demo"

die() { echo "build.sh: $*" >&2; exit 1; }

rustup_has_target() {
    command -v rustup >/dev/null 2>&1 &&
        rustup target list --installed 2>/dev/null | grep -x "$1" >/dev/null
}

rustup_tool() {
    # The rustup proxy ($1: cargo or rustc) sitting next to rustup, so the rustup
    # toolchain is used even when /usr/bin comes first in PATH.
    local proxy
    proxy="$(dirname "$(command -v rustup)")/$1"
    if [ -x "$proxy" ]; then echo "$proxy"; else echo "$1"; fi
}

TARGET="${WASM_TARGET:-}"
CARGO_BIN="${CARGO:-}"
RUSTC_BIN="${RUSTC:-rustc}"
if [ -z "$TARGET" ] || [ -z "$CARGO_BIN" ]; then
    if rustup_has_target wasm32-wasip1; then
        TARGET="${TARGET:-wasm32-wasip1}"
        CARGO_BIN="${CARGO_BIN:-$(rustup_tool cargo)}"
        RUSTC_BIN="${RUSTC:-$(rustup_tool rustc)}"
    elif rustup_has_target wasm32-wasi; then
        TARGET="${TARGET:-wasm32-wasi}"
        CARGO_BIN="${CARGO_BIN:-$(rustup_tool cargo)}"
        RUSTC_BIN="${RUSTC:-$(rustup_tool rustc)}"
    else
        TARGET="${TARGET:-wasm32-wasi}"
        CARGO_BIN="${CARGO_BIN:-/usr/bin/cargo}"
        hint="install a WASI toolchain: 'apt-get install rustc cargo libstd-rust-dev-wasm32' or 'rustup target add wasm32-wasip1'"
        [ -x /usr/bin/rustc ] && command -v "$CARGO_BIN" >/dev/null 2>&1 ||
            die "no Rust toolchain for $TARGET found; $hint"
        /usr/bin/rustc --print target-list | grep -x "$TARGET" >/dev/null ||
            die "/usr/bin/rustc does not know target $TARGET; $hint"
        [ -d "/usr/lib/rustlib/$TARGET/lib" ] ||
            die "std for $TARGET is not installed (/usr/lib/rustlib/$TARGET missing); $hint"
        export RUSTC="${RUSTC:-/usr/bin/rustc}"
        RUSTC_BIN="$RUSTC"
    fi
fi

# A Cargo.lock written by cargo >= 1.78 (lockfile v4) cannot be read by older
# cargo such as Debian's. The guests have no dependencies, so if the lock file
# only lists workspace crates it is safe to drop and regenerate it.
LOCK="$HERE/Cargo.lock"
if [ -f "$LOCK" ] && grep -q '^version = 4' "$LOCK" && ! grep -q '^source = ' "$LOCK"; then
    cargo_minor="$("$CARGO_BIN" --version | sed -n 's/^cargo 1\.\([0-9]*\).*/\1/p')"
    if [ -n "$cargo_minor" ] && [ "$cargo_minor" -lt 78 ]; then
        rm -f "$LOCK"
    fi
fi

# rustc links wasm32 modules with rust-lld, looked up first in the toolchain's own
# lib/rustlib/<host>/bin (rustup ships it there), then on PATH. Debian's /usr/bin/rust-lld
# is a link to lld-<LLVM major>, which libstd-rust-dev-wasm32 only recommends: check before
# cargo runs, so a missing linker is one line naming the package instead of a link error.
check_linker() {
    local rustc="$1" var linker sysroot candidate dir llvm
    var="CARGO_TARGET_$(printf '%s' "$TARGET" | tr 'a-z-' 'A-Z_')_LINKER"
    linker="${!var:-rust-lld}"
    if [ "$linker" != "${linker#*/}" ]; then
        [ -x "$linker" ] || die "linker $linker (from $var) does not exist or is not executable"
        return 0
    fi
    sysroot="$("$rustc" --print sysroot)" || die "$rustc --print sysroot failed"
    for candidate in "$sysroot"/lib/rustlib/*/bin/"$linker"; do
        [ -x "$candidate" ] && return 0
    done
    command -v "$linker" >/dev/null 2>&1 && [ -x "$(command -v "$linker")" ] && return 0
    if [ "$linker" = rust-lld ]; then
        llvm="$("$rustc" -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
        local IFS=:
        for dir in $PATH; do
            if [ -L "$dir/rust-lld" ]; then
                die "linker rust-lld not found: $dir/rust-lld -> $(readlink "$dir/rust-lld") is missing; install it: apt-get install lld-$llvm"
            fi
        done
        die "linker rust-lld not found (rustc $sysroot, LLVM $llvm); install it: apt-get install lld-$llvm, or use rustup (its toolchains ship rust-lld)"
    fi
    die "linker $linker (from $var) not found on PATH"
}

export CARGO_NET_OFFLINE=true
# Paths inside the modules (panic locations) are relative to the workspace, not to
# wherever this checkout lives: the same source gives the same bytes anywhere.
export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$HERE=."
TARGET_DIR="${CARGO_TARGET_DIR:-$HERE/target}"
export CARGO_TARGET_DIR="$TARGET_DIR"

check_linker "$RUSTC_BIN"
echo "build.sh: $("$CARGO_BIN" --version) (rustc: ${RUSTC:-from toolchain}), target $TARGET" >&2

# Artifact messages (JSON) go to stdout, diagnostics are rendered to stderr.
messages="$(cd "$HERE" && "$CARGO_BIN" build --workspace --release --offline \
    --target "$TARGET" --message-format=json-render-diagnostics)" ||
    die "cargo build failed"

# Every produced executable that is a .wasm module.
mapfile -t modules < <(printf '%s\n' "$messages" |
    grep -o '"executable":"[^"]*\.wasm"' | sed 's/^"executable":"//; s/"$//' | sort -u)
[ "${#modules[@]}" -gt 0 ] || die "cargo produced no .wasm modules"

mkdir -p "$OUT"
for wasm in "${modules[@]}"; do
    [ -f "$wasm" ] || die "missing build output $wasm"
    name="$(basename "$wasm")"
    cp -f "$wasm" "$OUT/$name"
    printf '%-24s %9d bytes\n' "out/$name" "$(wc -c < "$OUT/$name" | tr -d ' ')"
done

if [ -f "$OUT/http-hello.wasm" ]; then
    mkdir -p "$DEMO_DIR"
    if ! cmp -s "$OUT/http-hello.wasm" "$DEMO_DIR/http-hello.wasm"; then
        cp -f "$OUT/http-hello.wasm" "$DEMO_DIR/http-hello.wasm"
        echo "build.sh: updated wasmhost/_demo/http-hello.wasm" >&2
    fi
fi
