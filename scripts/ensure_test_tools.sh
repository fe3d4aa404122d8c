#!/usr/bin/env bash
# Make sure the external tools the tests use are here (run by `make test`; quick when they
# are). Today that is shellcheck, which lints scripts/*.sh: installed with apt-get when
# missing and we are root; otherwise one line says its tests will be skipped.
set -euo pipefail

if command -v shellcheck >/dev/null; then
    exit 0
fi
if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing shellcheck (apt-get) for the shell script tests"
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends shellcheck >/dev/null; then
        exit 0
    fi
    echo "shellcheck could not be installed: the shellcheck tests will be skipped" >&2
    exit 0
fi
echo "shellcheck is not installed (package shellcheck): the shellcheck tests will be skipped"
