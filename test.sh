#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds the solution (warnings are errors)
# and runs every test.
set -euo pipefail
cd "$(dirname "$0")"

# PostgreSQL: the tests start private servers from its binaries (/usr/lib/postgresql/*/bin), unless
# NIGHTSHIFT_TEST_POSTGRES names a server. Installed with apt when missing and we are root; elsewhere
# this says what to install and the PostgreSQL tests fail with the same advice.
if [[ -z "${NIGHTSHIFT_TEST_POSTGRES:-}" ]] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get > /dev/null; then
    echo "test.sh: installing PostgreSQL (Debian package 'postgresql') for the store tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql > /dev/null
  else
    echo "test.sh: PostgreSQL is missing: install the 'postgresql' package (e.g. sudo apt-get install postgresql)" >&2
    echo "         or set NIGHTSHIFT_TEST_POSTGRES to a connection string; the PostgreSQL tests will fail until then." >&2
  fi
fi

# --- chromium: the dashboard tests drive Debian's chromium headless (Playwright's own download is not used) ---
if [ -z "${CHROMIUM_PATH:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
# --- end chromium ---

dotnet build Orleans.sln -c Release
dotnet test Orleans.sln -c Release --no-build "$@"
