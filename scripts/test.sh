#!/usr/bin/env bash
# Run the whole test suite. Installs everything the tests need first (idempotent):
# Debian packages (FreeTDS tsql, curl, libltdl7 for ODBC Driver 18), a Python venv with the
# Python SQL Server clients, a local npm folder with tedious, and cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CLIENTS="$ROOT/.test-clients"
mkdir -p "$CLIENTS"

need_apt=()
command -v tsql >/dev/null 2>&1 || need_apt+=(freetds-bin)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
dpkg -s libltdl7 >/dev/null 2>&1 || need_apt+=(libltdl7)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$CLIENTS/venv/bin/python" ]; then
  echo "== creating Python venv with SQL Server clients"
  python3 -m venv "$CLIENTS/venv"
fi
"$CLIENTS/venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/clients/requirements.txt"

if [ ! -d "$CLIENTS/node/node_modules/tedious" ]; then
  echo "== installing tedious into a local npm folder"
  mkdir -p "$CLIENTS/node"
  cp "$ROOT/tests/clients/package.json" "$CLIENTS/node/package.json"
  (cd "$CLIENTS/node" && npm install --silent --no-audit --no-fund >/dev/null)
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

export MILINK_TEST_CLIENTS="$CLIENTS"
echo "== building"
cargo build --workspace --all-targets
echo "== running tests"
cargo nextest run --workspace --no-fail-fast "$@"
