#!/usr/bin/env bash
# The demo job: trains k-means on scikit-learn's digits and batch-transforms the validation set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh demo
exec .venv/bin/python examples/kmeans/demo.py "${1:-demo-output}"
