#!/usr/bin/env bash
# The GPU check: on a machine with one or more NVIDIA GPUs, in under 8 minutes, the smoke study with trainer=gpu,
# the quick study on the dev archive with per-stage times, the training-throughput benchmark on the GPU and, with
# two or more GPUs, a trainer=ddp smoke run whose test metrics must equal one GPU's; then one table
# (benchmarks/gpu_check.py says what each line is).
#
#   . .venv/bin/activate && bash benchmarks/gpu_check.sh [--dev-archive PATH] [--workdir DIR]
#
# Without a GPU it stops within a second, before importing anything, with a message and exit status 2.
set -euo pipefail
fail() {
    echo "gpu_check: $*" >&2
    exit 2
}
if [[ -v CUDA_VISIBLE_DEVICES && ( -z "$CUDA_VISIBLE_DEVICES" || "$CUDA_VISIBLE_DEVICES" == "-1" ) ]]; then
    fail "no GPU visible: CUDA_VISIBLE_DEVICES='$CUDA_VISIBLE_DEVICES' hides every GPU; unset it or name the GPUs to use"
fi
command -v nvidia-smi >/dev/null 2>&1 \
    || fail "no NVIDIA GPU here (nvidia-smi not found): run this on a machine with one or more NVIDIA GPUs and their driver"
gpus="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -c . || true)"
[[ "$gpus" -ge 1 ]] || fail "nvidia-smi lists no GPU (is the driver loaded? nvidia-smi says: $(nvidia-smi 2>&1 | head -1))"
cd "$(dirname "$0")"
exec python gpu_check.py "$@"
