#!/bin/sh
# Builds the Python conformance guest: build.sh OUT.wasm
# Exit 77 (skipped) when componentize-py is missing
# (install it with guest-sdk/python/install.sh).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 2; }
case "$1" in /*) out="$1" ;; *) out="$(pwd)/$1" ;; esac
cd "$(dirname "$0")/../../.."
if ! componentize-py --version >/dev/null 2>&1; then
    echo "componentize-py not found (run guest-sdk/python/install.sh)" >&2
    exit 77
fi
exec componentize-py -d wit -w wasp:spi/plugin-command componentize \
    -p guest-sdk/python -p tests/conformance/python app -o "$out"
