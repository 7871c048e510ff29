#!/bin/sh
# Builds the python-echo plugin: build.sh OUT.wasm
# (needs componentize-py: guest-sdk/python/install.sh)
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 2; }
case "$1" in /*) out="$1" ;; *) out="$(pwd)/$1" ;; esac
cd "$(dirname "$0")/../.."
exec componentize-py -d wit -w wasp:spi/plugin-command componentize \
    -p guest-sdk/python -p examples/python-echo app -o "$out"
