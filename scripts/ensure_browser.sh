#!/usr/bin/env bash
# Make sure a headless browser is here for the admin page's test (run by `make test`; quick
# when it is). It is the Debian package chromium: installed with apt-get when missing and we
# are root; otherwise one line says the browser test will be skipped.
set -euo pipefail

for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null; then
        exit 0
    fi
done
if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing chromium (apt-get) for the admin page's browser test"
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
        exit 0
    fi
    echo "chromium could not be installed: the browser test will be skipped" >&2
    exit 0
fi
echo "chromium is not installed (package chromium): the browser test will be skipped"
