#!/usr/bin/env bash
# The GPU benchmarks (benchmarks/gpu_images.py and gpu_text.py) on a machine with an NVIDIA GPU,
# its own Python and torch, and no network, in two steps (DEVELOPERS.md, "GPU benchmarks"):
#
#   scripts/gpu_benchmarks.sh wheels      here, with the package index: Conveyor's wheel and its
#                                         dependencies' (and pip's, and Pillow's) for the GPU
#                                         machine's Python (GPU_PYTHON, default 3.12), in .bench/gpu-wheels
#   scripts/gpu_benchmarks.sh run [DIR]   there, in a copy of the checkout with .bench/gpu-wheels:
#                                         a venv over the machine's torch, the device's name, and
#                                         both benchmarks at their default sizes, each one's output
#                                         also written to DIR (default $OUT, else gpu-benchmarks)
#
# GPU_IMAGES_ARGS and GPU_TEXT_ARGS replace the benchmarks' sizes (a smoke run: "--images 8 --size 32").
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=.bench/gpu-wheels

case "${1:-}" in
wheels)
    version=${GPU_PYTHON:-3.12}
    pip=(.venv/bin/python -m pip)
    [ -x .venv/bin/python ] || pip=(python3 -m pip)
    rm -rf "$wheels"
    mkdir -p "$wheels"
    "${pip[@]}" wheel --quiet --no-deps --wheel-dir "$wheels" .
    mapfile -t dependencies < <(python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
    "${pip[@]}" download --quiet --dest "$wheels" --only-binary=:all: --python-version "$version" --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        "${dependencies[@]}" "pillow>=10" pip
    echo "$(ls "$wheels" | wc -l) wheels for Python $version in $wheels: $(du -sh "$wheels" | cut -f1)"
    ;;
run)
    out=${2:-${OUT:-gpu-benchmarks}}
    mkdir -p "$out"
    [ -d "$wheels" ] || { echo "no $wheels here: run 'scripts/gpu_benchmarks.sh wheels' on a machine with the package index, and bring it" >&2; exit 2; }
    venv=$(mktemp -d)/venv
    python3 -m venv --system-site-packages --without-pip "$venv"  # the machine's torch, and no ensurepip needed
    pip=("$venv/bin/python" "$(ls "$wheels"/pip-*.whl)/pip" install --quiet --no-index --find-links "$wheels")
    "${pip[@]}" --force-reinstall --no-deps conveyor  # into the venv, even where the machine has a Conveyor
    "${pip[@]}" conveyor pillow  # what the machine lacks of their dependencies
    {
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: none"
        echo "$(nproc) CPUs"
        "$venv/bin/python" -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")'
    } | tee "$out/device.txt"
    status=0
    # shellcheck disable=SC2086  # the arguments are words
    timeout 270 "$venv/bin/python" benchmarks/gpu_images.py ${GPU_IMAGES_ARGS:---images 5000} 2>&1 | tee "$out/gpu_images.txt" || status=1
    # shellcheck disable=SC2086
    timeout 270 "$venv/bin/python" benchmarks/gpu_text.py ${GPU_TEXT_ARGS:---sentences 200000} 2>&1 | tee "$out/gpu_text.txt" || status=1
    exit $status
    ;;
*)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
