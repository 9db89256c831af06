// `jco embed` for a WIT directory: jco 1.35's command runs wasm-tools without filesystem preopens,
// so it cannot read the WIT (NotFound). Same call, with the host's "/" preopened.
// Usage: node embed.mjs CORE.wasm WIT_DIR WORLD OUT.wasm
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const transpile = fileURLToPath(new URL("node_modules/@bytecodealliance/jco-transpile/", import.meta.url));
const shim = "node_modules/@bytecodealliance/preview2-shim/dist/nodejs/filesystem.js";
const { _setPreopens } = await import(transpile + shim);
_setPreopens({ "/": "/" });
const { componentEmbed } = await import(transpile + "dist/wasm-tools.js");
const [core, witPath, world, out] = process.argv.slice(2);
await writeFile(out, await componentEmbed({ binary: await readFile(core), witPath, world }));
