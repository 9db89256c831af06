#!/usr/bin/env bash
# Build the wasi:http/proxy test components into components/out/<name>.wasm, offline:
#   python/<name>/app.py  with componentize-py (PyPI), plus python/shared/ on the path;
#   js/<name>/app.js      with componentize-js (npm, in js/node_modules), when it is installed, as out/js-<name>.wasm;
#   rust/<name>/          std-only Rust (cargo, target wasm32-wasi) made a component by jco's embed and new with the
#                         preview1 reactor adapter, when jco is installed and cargo has the target, as out/rust-<name>.wasm.
# The WIT (wasi:http@0.2.0 and its dependencies) comes from the spin-sdk wheel (PyPI).
#
# Builds are cached by content: out/<name>.key holds a hash of the guest's sources, the shared
# sources and the tool versions; an unchanged guest is not rebuilt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/out"
PYTHON="${PYTHON:-python3}"  # the environment with componentize-py and spin-sdk

die() { echo "components/build.sh: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "no Python $PYTHON (set PYTHON to the one with componentize-py)"
# componentize-py from the same environment as $PYTHON (a venv need not be on PATH), else from PATH.
COMPONENTIZE_PY="$(dirname "$(command -v "$PYTHON")")/componentize-py"
[ -x "$COMPONENTIZE_PY" ] || COMPONENTIZE_PY="$(command -v componentize-py)" ||
    die "componentize-py not found: pip install componentize-py spin-sdk"
# One Python call for what the cache key and the WIT need: tool versions and the WIT directory.
read -r PY_TOOLS WIT_DEPS < <("$PYTHON" - 2>/dev/null <<'EOF'
import importlib.metadata as md, importlib.util, os
spec = importlib.util.find_spec("spin_sdk")
deps = os.path.join(os.path.dirname(spec.origin), "wit", "deps") if spec and spec.origin else "-"
print(f"componentize-py={md.version('componentize-py')},spin-sdk={md.version('spin-sdk')}", deps)
EOF
) || die "componentize-py or spin-sdk is not installed: pip install componentize-py spin-sdk"
[ -d "$WIT_DEPS/http@0.2.0" ] || die "no wasi:http@0.2.0 WIT in $WIT_DEPS (spin-sdk)"

# componentize-py resolves one package with a deps/ folder: wasi:http is the root package.
# Copies, not links: jco's wasm-tools does not follow a link out of its preopened tree.
WIT="$OUT/.wit"
rm -rf "$WIT"
mkdir -p "$WIT/deps"
cp -f "$WIT_DEPS"/http@0.2.0/*.wit "$WIT/"
for dep in io clocks random cli filesystem sockets; do
    cp -r "$WIT_DEPS/$dep@0.2.0" "$WIT/deps/$dep"
done

# key NAME TOOLS FILE...: the content hash a build of NAME depends on.
key() {
    local name="$1" tools="$2"
    shift 2
    { echo "$name $tools"; cat "$@"; } | sha256sum | cut -d' ' -f1
}

# cached NAME KEY: true when out/NAME.wasm was built from exactly this key.
cached() {
    [ -f "$OUT/$1.wasm" ] && [ "$(cat "$OUT/$1.key" 2>/dev/null)" = "$2" ]
}

built() {
    echo "$2" > "$OUT/$1.key"
    printf '%-20s %9d bytes\n' "out/$1.wasm" "$(wc -c < "$OUT/$1.wasm" | tr -d ' ')"
}

# componentize-py adds the current environment's site-packages to the app's path unless VIRTUAL_ENV
# names another one, and spin-sdk's componentize-py.toml there would load its WIT a second time.
NO_SITE="$OUT/.no-site"
mkdir -p "$NO_SITE/lib/python3/site-packages"

mapfile -t shared < <(find "$HERE/python/shared" -name '*.py' | sort)
for dir in "$HERE"/python/*/; do
    name="$(basename "$dir")"
    [ "$name" = shared ] && continue
    [ -f "$dir/app.py" ] || continue
    mapfile -t sources < <(find "$dir" -name '*.py' | sort)
    k="$(key "$name" "$PY_TOOLS" "${sources[@]}" "${shared[@]}")"
    cached "$name" "$k" && continue
    VIRTUAL_ENV="$NO_SITE" "$COMPONENTIZE_PY" -q -d "$WIT" -w wasi:http/proxy@0.2.0 componentize app \
        -p "$dir" -p "$HERE/python/shared" -o "$OUT/$name.wasm.tmp" || die "componentize-py failed for python/$name"
    mv -f "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
    built "$name" "$k"
done

JS="$HERE/js/node_modules/@bytecodealliance"
if [ -x "$HERE/js/node_modules/.bin/componentize-js" ]; then
    # StarlingMonkey (inside componentize-js) exports one fixed wasi:http 0.2.x version, and the world must
    # name that version. jco ships the newest 0.2 WIT; within 0.2 the interfaces only grow, so it is
    # relabelled to the version the engine exports.
    version="$(grep -ao 'wasi:http/incoming-handler@0\.2\.[0-9]*' "$JS/componentize-js/lib/starlingmonkey_embedding.wasm" |
        head -n1 | sed 's/.*@//')"
    builtin="$(find "$JS/jco/lib/wit/builtin" -maxdepth 1 -name '0.2.*' | sort -V | tail -n1)"
    [ -n "$version" ] && [ -n "$builtin" ] || die "cannot find StarlingMonkey's wasi:http version or jco's WIT"
    JS_WIT="$OUT/.wit-js"
    rm -rf "$JS_WIT"
    mkdir -p "$JS_WIT/deps"
    for package in "$builtin"/wasi-*/; do
        dep="$(basename "$package")"
        target="$JS_WIT/deps/${dep#wasi-}"
        [ "$dep" = wasi-http ] && target="$JS_WIT"
        mkdir -p "$target"
        sed "s/@${builtin##*/}/@$version/g" "$package/package.wit" > "$target/package.wit"
    done
    JS_TOOLS="componentize-js=$(node -p "require('$JS/componentize-js/package.json').version"),wit=$(basename "$builtin")->$version"
    for dir in "$HERE"/js/*/; do
        name="$(basename "$dir")"
        [ -f "$dir/app.js" ] || continue
        k="$(key "js-$name" "$JS_TOOLS" "$dir/app.js")"
        cached "js-$name" "$k" && continue
        "$HERE/js/node_modules/.bin/componentize-js" --wit "$JS_WIT" --world-name "wasi:http/proxy@$version" \
            --out "$OUT/js-$name.wasm.tmp" "$dir/app.js" >/dev/null || die "componentize-js failed for js/$name"
        mv -f "$OUT/js-$name.wasm.tmp" "$OUT/js-$name.wasm"
        built "js-$name" "$k"
    done
else
    echo "components/build.sh: componentize-js not installed (npm ci --prefix components/js): JavaScript guests skipped" >&2
fi

# Rust: CARGO, RUSTC and WASM_TARGET when set, else the project's toolchain (Debian's cargo and rustc,
# target wasm32-wasi; see rust-guests/build.sh), so that a rustup cargo on PATH is not picked by accident.
CARGO_BIN="${CARGO:-/usr/bin/cargo}"
RUST_TARGET="${WASM_TARGET:-wasm32-wasi}"
[ -n "${CARGO:-}" ] || export RUSTC="${RUSTC:-/usr/bin/rustc}"
if [ ! -x "$HERE/js/node_modules/.bin/jco" ]; then
    echo "components/build.sh: jco not installed (npm ci --prefix components/js): Rust components skipped" >&2
elif ! command -v "$CARGO_BIN" >/dev/null 2>&1; then
    echo "components/build.sh: no cargo: Rust components skipped" >&2
else
    RUST_TOOLS="$("$CARGO_BIN" --version),target=$RUST_TARGET,jco=$(node -p "require('$JS/jco/package.json').version")"
    for dir in "$HERE"/rust/*/; do
        name="$(basename "$dir")"
        mapfile -t sources < <(find "$dir" -name '*.rs' -o -name Cargo.toml | sort)
        k="$(key "rust-$name" "$RUST_TOOLS" "${sources[@]}")"
        cached "rust-$name" "$k" && continue
        CARGO_TARGET_DIR="$OUT/.rust-target" CARGO_NET_OFFLINE=true "$CARGO_BIN" build -q --release --offline \
            --target "$RUST_TARGET" --manifest-path "$dir/Cargo.toml" || die "cargo build failed for rust/$name"
        core="$OUT/.rust-target/$RUST_TARGET/release/${name//-/_}.wasm"
        node "$HERE/js/embed.mjs" "$core" "$WIT" wasi:http/proxy@0.2.0 "$OUT/rust-$name.embedded.wasm" ||
            die "jco embed failed for rust/$name"
        "$HERE/js/node_modules/.bin/jco" new "$OUT/rust-$name.embedded.wasm" --wasi-reactor \
            -o "$OUT/rust-$name.wasm.tmp" >/dev/null || die "jco new failed for rust/$name"
        rm -f "$OUT/rust-$name.embedded.wasm"
        mv -f "$OUT/rust-$name.wasm.tmp" "$OUT/rust-$name.wasm"
        built "rust-$name" "$k"
    done
fi
