#!/usr/bin/env bash
# Lint (ruff), type check (mypy) and the whole test suite, slow tests included; installs what
# they need first. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
