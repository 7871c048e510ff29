#!/bin/sh
# Builds the JavaScript conformance guest: build.sh OUT.wasm
# With StarlingMonkey (componentize-js 0.23); WASP_JS_ENGINE=quickjs builds
# it with QuickJS (componentize-qjs) instead.
# Exit 77 (skipped) when node or the SDK's npm packages are missing
# (install them with guest-sdk/js/install.sh).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 2; }
case "$1" in /*) out="$1" ;; *) out="$(pwd)/$1" ;; esac
cd "$(dirname "$0")/../../.."
if ! command -v node >/dev/null 2>&1; then
    echo "node not found (apt-get install nodejs npm, then guest-sdk/js/install.sh)" >&2
    exit 77
fi
if ! node --input-type=module -e 'process.exit(typeof import.meta.resolve === "function" ? 0 : 1)'; then
    echo "node $(node --version) is too old for guest-sdk/js/build.mjs (18.19 or later)" >&2
    exit 77
fi
engine="${WASP_JS_ENGINE:-starlingmonkey}"
case "$engine" in
    quickjs|qjs) pkg=componentize-qjs ;;
    *) pkg=@bytecodealliance/componentize-js ;;
esac
if [ ! -f "guest-sdk/js/node_modules/$pkg/package.json" ]; then
    echo "$pkg not installed (run guest-sdk/js/install.sh)" >&2
    exit 77
fi
exec node guest-sdk/js/build.mjs tests/conformance/js/conformance.js -o "$out" --engine "$engine"
