#!/usr/bin/env bash
# The README's test command: builds the solution (warnings are errors) and runs every test.
set -euo pipefail
cd "$(dirname "$0")"
dotnet build Orleans.sln -c Release
dotnet test Orleans.sln -c Release --no-build "$@"
