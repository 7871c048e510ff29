#!/bin/sh
# Builds containerd-shim-wasp-v1 and runs its tests, the end-to-end test
# with a real containerd included (it says `SKIPPED containerd shim:
# <reason>` where containerd cannot start on the machine).
#
#   sh shim/test.sh            # from anywhere
#
# Installs what is missing from Debian's packages first (as root; a
# user who is not root gets a SKIPPED line saying what is missing):
# containerd (the test's), protobuf-compiler and libseccomp-dev (the
# shim's build). CARGO_TARGET_DIR is honoured; the default is shim/target.
# CARGO_BUILD_JOBS (or a `nice`) keeps the build gentle on shared machines.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

missing=""
command -v containerd >/dev/null 2>&1 || missing="$missing containerd"
command -v protoc >/dev/null 2>&1 || missing="$missing protobuf-compiler"
[ -e /usr/include/seccomp.h ] || missing="$missing libseccomp-dev"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "SKIPPED containerd shim: missing Debian packages:$missing (install them as root)" >&2
        exit 0
    fi
    echo "shim/test.sh: installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

cd "$here"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --locked
cargo test --locked
