#!/usr/bin/env bash
# The whole test suite, slow tests included; installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
exec .venv/bin/python -m pytest "$@"
