#!/usr/bin/env bash
# The GPU check: a small slice of the default suite on CUDA, robustness cells (against the committed
# CPU baselines: a different device, so the summary warns and the tolerance applies) and the latency
# benchmarks (float32 and float16). Results go to a folder; about two minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # default OUT_DIR: gpu-check-results
#   DEVICE=cpu bash benchmarks/gpu_check.sh /tmp/x  # dry run of the same steps without a GPU
#
# Needs python3 with torch (CUDA), pytest, pytest-benchmark, pytest-xdist and scikit-learn. It installs
# torch-pruning (pure Python) from wheels in .whl/ when they are there (an offline machine), or from the
# package index otherwise; the default matrix's attacks are the plugin's own and need no torchattacks.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check-results}"
device="${DEVICE:-cuda}"
python="${PYTHON:-python3}"
mkdir -p "$out"

if ! "$python" -c "import torch_pruning" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$python" -m pip install -q --no-deps --no-compile --target /tmp/advprune-site .whl/*.whl
        export PYTHONPATH="/tmp/advprune-site${PYTHONPATH:+:$PYTHONPATH}"
    else
        "$python" -m pip install -q --no-deps "torch-pruning==1.6.1"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
plugin=()
if ! "$python" -c "import importlib.metadata as m, sys; sys.exit(not any(e.name == 'advprune' for e in m.entry_points(group='pytest11')))"; then
    plugin=(-p pytest_advprune.plugin)  # not installed: load it from the checkout
fi

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "nvidia-smi: not available"
    "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} | tee "$out/environment.txt"

status=0
run() {
    local name=$1
    shift
    echo "+ pytest $*" | tee "$out/$name.txt"
    "$python" -m pytest suites/ "${plugin[@]}" -p no:cacheprovider --advprune-device="$device" "$@" 2>&1 | tee -a "$out/$name.txt" ||
        status=1
}

run robustness -m "not advprune_timing" --advprune-models=lenet,resnet -q
run timing -m advprune_timing --advprune-models=resnet,vgg -o advprune_timing_batch_sizes=1,256 \
    --benchmark-json="$out/timing.json" -q
run timing_fp16 -m advprune_timing --advprune-models=resnet --advprune-dtype=float16 \
    --benchmark-json="$out/timing_fp16.json" -q
echo "gpu check finished with status $status; results in $out/" | tee -a "$out/environment.txt"
exit "$status"
