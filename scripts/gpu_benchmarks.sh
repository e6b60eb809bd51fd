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
# GPU_IMAGES_ARGS and GPU_TEXT_ARGS replace the benchmarks' sizes (a smoke run: "--images 8 --size 32");
# GPU_ARCH (default x86_64) is the GPU machine's processor, GPU_BASE_PYTHON (default python3) the
# Python there that has torch: a virtual environment's gets the wheels itself.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=.bench/gpu-wheels

case "${1:-}" in
wheels)
    version=${GPU_PYTHON:-3.12}
    arch=${GPU_ARCH:-x86_64}
    pip=(.venv/bin/python -m pip)
    [ -x .venv/bin/python ] || pip=(python3 -m pip)
    rm -rf "$wheels"
    mkdir -p "$wheels"
    "${pip[@]}" wheel --quiet --no-deps --wheel-dir "$wheels" .
    mapfile -t dependencies < <(python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
    "${pip[@]}" download --quiet --dest "$wheels" --only-binary=:all: --python-version "$version" --implementation cp \
        --platform "manylinux2014_$arch" --platform "manylinux_2_17_$arch" --platform "manylinux_2_28_$arch" \
        "${dependencies[@]}" "pillow>=10" pip
    echo "$(ls "$wheels" | wc -l) wheels for Python $version on $arch in $wheels: $(du -sh "$wheels" | cut -f1)"
    ;;
run)
    out=${2:-${OUT:-gpu-benchmarks}}
    mkdir -p "$out"
    [ -d "$wheels" ] || { echo "no $wheels here: run 'scripts/gpu_benchmarks.sh wheels' on a machine with the package index, and bring it" >&2; exit 2; }
    base=${GPU_BASE_PYTHON:-python3}
    "$base" -c 'import torch' || { echo "$base cannot import torch: set GPU_BASE_PYTHON to the Python that has it" >&2; exit 2; }
    if "$base" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
        python=$base  # a virtual environment's Python: its torch is not a system site-package that a venv could see
    else
        venv=$(mktemp -d)/venv
        "$base" -m venv --system-site-packages --without-pip "$venv"  # the machine's torch, and no ensurepip needed
        python=$venv/bin/python
    fi
    pip=("$python" "$(ls "$wheels"/pip-*.whl)/pip" install --quiet --no-index --find-links "$wheels")
    "${pip[@]}" --force-reinstall --no-deps conveyor  # this Conveyor, even where the machine has one
    "${pip[@]}" conveyor pillow  # what the machine lacks of their dependencies
    {
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: none"
        echo "$(nproc) CPUs"
        "$python" -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")'
    } | tee "$out/device.txt"
    status=0
    # shellcheck disable=SC2086  # the arguments are words
    timeout 270 "$python" benchmarks/gpu_images.py ${GPU_IMAGES_ARGS:---images 5000} 2>&1 | tee "$out/gpu_images.txt" || status=1
    # shellcheck disable=SC2086
    timeout 270 "$python" benchmarks/gpu_text.py ${GPU_TEXT_ARGS:---sentences 200000} 2>&1 | tee "$out/gpu_text.txt" || status=1
    exit $status
    ;;
*)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
