#!/usr/bin/env bash
# What a lent GPU machine runs, in one call (README, "Devices"): the GPU-marked tests, then the
# approximate-unlearning benchmark on CUDA with one process per method and path. Its Python has
# torch, transformers, peft and scikit-learn; the tests need no Django. Results land in $OUT.
set -uo pipefail
export UNLEARNING_DEVICE=cuda PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-var/gpu-checks}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" >> "$OUT/gpu.txt"
python3 -m pytest -p no:cacheprovider -o addopts="" -m gpu tests/test_devices.py -q --durations=5 2>&1 | tee "$OUT/gpu-tests.log"
timeout "${BENCH_SECONDS:-$((545 - SECONDS))}" python3 bench/approximate_unlearning/run.py --workers "${BENCH_WORKERS:-21}" \
    --store /tmp/bench-approximate --json "$OUT/bench.json" > "$OUT/bench.md" 2> "$OUT/bench.err"
echo "bench exit $?" >> "$OUT/bench.err"
tail -5 "$OUT/bench.err"
