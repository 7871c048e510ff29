#!/bin/sh
# Builds the C conformance guest: tests/conformance/c/build.sh OUT.wasm
#
# Exit 0 after writing OUT.wasm; 77 (with the reason on stderr) when the C
# toolchain is missing, so that the driver reports SKIPPED; anything else
# is a failure.
#
# The component is made by guest-sdk/c/wasp.mk. Its tool, wasp-c, is
# $WASP_C_TOOL when set; else target/debug/wasp-c (or the one under
# $CARGO_TARGET_DIR) when it is newer than its sources; else cargo builds it
# into target/wasp-c-tool, a target directory of its own: a `cargo test`
# running this script holds the lock of the workspace's (the first such
# build takes minutes).
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT.wasm" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
case "$1" in
    /*) out=$1 ;;
    *) out=$(pwd)/$1 ;;
esac

skip() {
    echo "$*; install the C toolchain with guest-sdk/c/install.sh" >&2
    exit 77
}

CC=${WASP_CC:-clang}
command -v "$CC" >/dev/null 2>&1 || skip "$CC (clang) not found"
command -v make >/dev/null 2>&1 || skip "make not found"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf 'int main(void) { return 0; }\n' > "$tmp/probe.c"
if ! "$CC" --target=wasm32-wasi -O2 -o "$tmp/probe.wasm" "$tmp/probe.c" 2> "$tmp/probe.err"; then
    sed 's/^/    /' "$tmp/probe.err" >&2
    skip "$CC cannot build wasm32-wasi modules (wasi-libc or lld missing)"
fi

tool=${WASP_C_TOOL:-}
case "$tool" in
    /* | "") ;;
    */*) tool=$(pwd)/$tool ;;
esac
if [ -z "$tool" ]; then
    for prebuilt in "${CARGO_TARGET_DIR:-$root/target}/debug/wasp-c" "$root/target/debug/wasp-c"; do
        if [ -x "$prebuilt" ] && [ -z "$(find "$root/guest-sdk/c/tool" -newer "$prebuilt" \
                -type f 2>/dev/null | head -n 1)" ]; then
            tool=$prebuilt
            break
        fi
    done
    if [ -z "$tool" ]; then
        tool_dir="$root/target/wasp-c-tool"
        CARGO_TARGET_DIR="$tool_dir" cargo build -q -p wasp-c-tool \
            --manifest-path "$root/Cargo.toml" >&2
        tool="$tool_dir/debug/wasp-c"
    fi
fi

make -s -C "$here" PLUGIN="$out" WASP_CORE="$tmp/conformance.core.wasm" \
    WASP_BUILD="$tmp/build" WASP_C_TOOL="$tool" WASP_CC="$CC" "$out" >&2
test -s "$out"
