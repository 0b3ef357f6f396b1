#!/usr/bin/env bash
# The README's test command: builds the solution (warnings are errors) and runs every test.
set -euo pipefail
cd "$(dirname "$0")"

# --- chromium: the dashboard tests drive Debian's chromium headless (Playwright's own download is not used) ---
if [ -z "${CHROMIUM_PATH:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
# --- end chromium ---

dotnet build Orleans.sln -c Release
dotnet test Orleans.sln -c Release --no-build "$@"
