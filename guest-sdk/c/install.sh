#!/bin/sh
# Installs the C toolchain of the wasp C SDK from Debian 12's own packages:
# clang 14, lld (wasm-ld), wasi-libc (headers in /usr/include/wasm32-wasi,
# libraries in /usr/lib/wasm32-wasi, where Debian's clang looks for target
# wasm32-wasi without a --sysroot) and compiler-rt's wasm32 builtins. Idempotent and non-interactive; run as root
# (or through sudo when it is there).
set -eu

PKGS="clang lld wasi-libc libclang-rt-dev-wasm32"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install.sh: already installed:$(printf ' %s' $PKGS)"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# Check that the toolchain links a wasm32-wasi module.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'int main(void) { return 0; }\n' > "$tmp/t.c"
clang --target=wasm32-wasi -O2 -o "$tmp/t.wasm" "$tmp/t.c"
echo "install.sh: clang $(clang -dumpversion) builds wasm32-wasi modules"
