#!/bin/sh
# Builds the js-echo plugin: build.sh OUT.wasm [starlingmonkey|quickjs]
# (StarlingMonkey by default). Needs node and guest-sdk/js/install.sh.
set -eu
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 OUT.wasm [starlingmonkey|quickjs]" >&2; exit 2; }
case "$1" in /*) out="$1" ;; *) out="$(pwd)/$1" ;; esac
cd "$(dirname "$0")/../.."
exec node guest-sdk/js/build.mjs examples/js-echo/echo.js -o "$out" --engine "${2:-starlingmonkey}"
