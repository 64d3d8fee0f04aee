#!/usr/bin/env bash
# What `make test` needs beyond the Python packages of `make setup`: Chromium, which renders
# `podium report`'s page in tests/test_report.py. Installed with apt-get where this user may
# (root, or sudo without a password); otherwise one line says how, before any test runs.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo"
    else
        sudo="none"
    fi
fi
if [ "$sudo" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "make test: chromium is not installed (tests/test_report.py renders the report page in it)" \
         "and this user cannot install it; install it with \`sudo apt-get install -y chromium\`" \
         "(Debian/Ubuntu package chromium), then run make test again" >&2
    exit 1
fi
echo "make test: installing Debian's chromium (tests/test_report.py renders the report page in it)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 || {
    echo "make test: apt-get installed chromium but no chromium command is on PATH" >&2
    exit 1
}
