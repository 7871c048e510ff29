#!/bin/sh
# Installs the JavaScript SDK's build tools (componentize-js 0.23.0 and
# componentize-qjs, pinned by package-lock.json) into guest-sdk/js/node_modules.
# Idempotent and non-interactive; needs node >= 18 and npm. Nothing is
# fetched but npm packages (no install scripts download anything).
set -eu
cd "$(dirname "$0")"
command -v npm >/dev/null 2>&1 || { echo "install.sh: npm not found (apt-get install nodejs npm)" >&2; exit 1; }
stamp=node_modules/.wasp-installed
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(cksum < package-lock.json)" ] \
    && [ -d node_modules/@bytecodealliance/componentize-js ]; then
    echo "guest-sdk/js: node packages already installed"
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cksum < package-lock.json > "$stamp"
echo "guest-sdk/js: node packages installed"
