#!/usr/bin/env bash
# The GPU path, measured in one command on a machine with an NVIDIA GPU (about 10 minutes):
#
#   bash benchmarks/gpu.sh            # from the repository's root
#
# It needs a Python with torch (CUDA) and the project's dependencies. Wheels in .whl/ (e.g.
# PyAV, cvvdp, cupy-cuda12x, nvidia-ml-py, tflite, pytest) are installed first into
# /tmp/site, without an index, for a machine that cannot reach one. Runs, each with its own
# time limit, and writes JSON under benchmarks/results/ (OUT= to change):
#   1. the CUDA tests (device colour conversion, the CuPy apply kernel against torch, the
#      models and the optimiser on the GPU);
#   2. the per-frame apply path stage by stage on the GPU, with the CuPy kernel's time and
#      its largest difference from torch's result, in levels;
#   3. `protect` end to end (decode, vdf, encode) at 1280x720 and 1920x1080;
#   4. live mode at 1280x720 played at 30 fps: frames delivered, added latency;
#   5. NVML: the GPU, its utilisation and memory after the runs.
# A step that fails is reported and the next one runs; the exit status is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "gpu.sh: the wheels in .whl/ did not install" >&2; exit 3; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# Not installed: run from this tree (the filters folder is the package vdf_stream.filters).
if ! "$PY" -c "import vdf_stream.filters.vdf" 2>/dev/null; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  [ -e vdf_stream/filters ] || ln -s ../filters vdf_stream/filters
fi
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "gpu.sh: torch sees no CUDA device; nothing measured" >&2; exit 3; }
TAG=$("$PY" -c "from vdf_stream.environment import machine_tag; print(machine_tag())")

failed=()
step() {  # step NAME SECONDS COMMAND...
  local name=$1 seconds=$2
  shift 2
  echo "== $name" >&2
  local started=$SECONDS
  timeout "$seconds" "$@" || failed+=("$name (exit $?)")
  echo "== $name: $((SECONDS - started)) s" >&2
}

step "CUDA tests" 240 "$PY" -m pytest -q -p no:cacheprovider -rs \
  tests/test_perturb.py tests/test_colour.py tests/test_models_tflite.py \
  tests/test_surrogates.py tests/test_ghost.py tests/test_filters.py -k "cuda or gpu or cupy"
step "apply stages" 60 "$PY" benchmarks/apply_stages.py --device cuda \
  --output "$OUT/apply_stages_$TAG.json"
step "protect 720p and 1080p" 180 "$PY" benchmarks/protect.py --device cuda \
  --sizes 1280x720 1920x1080 --frames 48 --share on --output "$OUT/protect_$TAG.json"
step "live 720p30" 120 "$PY" benchmarks/live.py --device cuda --sizes 1280x720 --loops 2 \
  --eval-frames 8 --output "$OUT/live_$TAG.json"
step "NVML" 30 "$PY" - "$OUT/nvml_$TAG.json" <<'PYTHON'
import json
import sys

import pynvml  # nvidia-ml-py

pynvml.nvmlInit()
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
name = pynvml.nvmlDeviceGetName(handle)
report = {"benchmark": "nvml", "gpu": name.decode() if isinstance(name, bytes) else name,
          "driver": pynvml.nvmlSystemGetDriverVersion(),
          "memory_used_gib": round(memory.used / 2**30, 2),
          "memory_total_gib": round(memory.total / 2**30, 2),
          "utilisation_percent": rates.gpu}
with open(sys.argv[1], "w") as file:
    json.dump(report, file, indent=2)
print(report)
PYTHON

if [ ${#failed[@]} -gt 0 ]; then
  printf 'gpu.sh: failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "gpu.sh: every step ran; results in $OUT" >&2
