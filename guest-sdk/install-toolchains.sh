#!/bin/sh
# Installs the toolchains of wasp's guest SDKs from the package registries
# only: C (Debian's clang, lld and wasi-libc), Python (componentize-py from
# PyPI) and JavaScript (componentize-js from npm). The Rust SDK needs only
# `rustup target add wasm32-wasip2`. Idempotent and non-interactive.
#
# A toolchain that cannot be installed is reported and the others are still
# installed: the tests of its language then say SKIPPED with the reason.
set -u
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || echo "install-toolchains: rustup target add wasm32-wasip2 failed" >&2
failed=""
for language in c python js; do
    start=$(date +%s)
    if sh "$language/install.sh"; then
        echo "install-toolchains: $language ready ($(( $(date +%s) - start )) s)"
    else
        echo "install-toolchains: $language toolchain NOT installed: its tests will say SKIPPED" >&2
        failed="$failed $language"
    fi
done
[ -z "$failed" ] || echo "install-toolchains: not installed:$failed" >&2
exit 0
