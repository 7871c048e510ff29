#!/bin/sh
# Installs the Python SDK's build tool, componentize-py (pinned), for
# python3. Idempotent and non-interactive: does nothing when it is there.
set -eu
cd "$(dirname "$0")"
if python3 -m pip show componentize-py 2>/dev/null | grep -qx 'Version: 0.25.1'; then
    echo "componentize-py 0.25.1 already installed"
    exit 0
fi
python3 -m pip install --no-input --disable-pip-version-check -r requirements.txt \
    || python3 -m pip install --no-input --disable-pip-version-check --break-system-packages -r requirements.txt
