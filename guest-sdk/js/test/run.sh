#!/bin/sh
# Builds test/selftest.js with both engines and runs it under wasp:
#     guest-sdk/js/test/run.sh [WASP]      (default: target/debug/wasp)
# Exit 77 when node or the SDK's npm packages are missing.
set -eu
cd "$(dirname "$0")/../../.."
wasp="${1:-target/debug/wasp}"
command -v node >/dev/null 2>&1 || { echo "node not found" >&2; exit 77; }
[ -d guest-sdk/js/node_modules/@bytecodealliance/componentize-js ] \
    || { echo "run guest-sdk/js/install.sh first" >&2; exit 77; }
[ -x "$wasp" ] || { echo "no $wasp (cargo build -p wasp-host)" >&2; exit 77; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0
for engine in starlingmonkey quickjs; do
    node guest-sdk/js/build.mjs guest-sdk/js/test/selftest.js -o "$out/$engine.wasm" --engine "$engine"
    if "$wasp" run "$out/$engine.wasm" --policy guest-sdk/js/test/policy.toml -- 2000; then
        echo "$engine: passed"
    else
        echo "$engine: FAILED"
        status=1
    fi
done
exit $status
