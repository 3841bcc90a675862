#!/usr/bin/env bash
# Issue 15's GPU check: the Triton kernel tests and the CUDA benchmark, as one prepared script.
#
# 1. Here (a machine that reaches PyPI), once per checkout:
#        bash benchmarks/gpu_check.sh fetch
#    downloads, for the GPU image's Python 3.12, the wheels of what that image lacks (pydantic
#    and its three dependencies, faiss-cpu, nevergrad with cma and bayesian-optimization; the
#    versions installed here) into .whl/, which .git/info/exclude keeps out of git (~30 MB).
# 2. On the GPU (the device tool's `run`, carry [".whl"], timeout_s 600), one of:
#        bash benchmarks/gpu_check.sh gpu        # tests + bf16 benchmark (~6-8 min, unmeasured estimate)
#        bash benchmarks/gpu_check.sh fp32       # fp32 --quick run: greedy ours == peft, fp32 ratios
#    Logs, JSON and PNG are copied to $OUT when it is set (the device tool brings them back),
#    and stay under benchmarks/results/ (mixed_batch_cuda_<dtype>*.json/.png).
# Nothing here installs torch or triton: the GPU image's own are used (wheels go to /tmp/site
# with --no-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-gpu}"
out="${OUT:-}"

fetch() {
  grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  local pins
  pins=$(python - <<'EOF'
from importlib.metadata import version
names = ["pydantic", "pydantic_core", "annotated-types", "typing-inspection", "faiss-cpu", "nevergrad", "cma",
         "bayesian-optimization"]
print(" ".join(f"{n}=={version(n)}" for n in names))
EOF
)
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $pins
  ls -l .whl
}

prepare() {
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import sys, torch, triton, transformers, peft; print('python', sys.version.split()[0], '| torch',
torch.__version__, '| triton', triton.__version__, '| transformers', transformers.__version__, '| peft',
peft.__version__, '| gpu', torch.cuda.get_device_name())"
}

keep() {  # copy results and logs to $OUT (flat: the device tool brings back at most 8 files)
  [ -n "$out" ] && cp "$@" "$out"/ 2>/dev/null || true
}

case "$stage" in
  fetch)
    fetch ;;
  gpu)
    prepare
    start=$(date +%s)
    set -o pipefail
    timeout 200 python3 -m pytest -q -x tests/engine/test_triton.py -m "not slow" 2>&1 | tee /tmp/triton_tests.log
    keep /tmp/triton_tests.log
    echo "tests: $(( $(date +%s) - start )) s"
    timeout 420 python3 benchmarks/mixed_batch.py --device cuda --dtype bf16 2>&1 | tee /tmp/bench_bf16.log
    keep /tmp/bench_bf16.log benchmarks/results/mixed_batch_cuda_bf16.json benchmarks/results/mixed_batch_cuda_bf16.png
    echo "total: $(( $(date +%s) - start )) s" ;;
  fp32)
    prepare
    set -o pipefail
    timeout 560 python3 benchmarks/mixed_batch.py --device cuda --dtype fp32 --quick 2>&1 | tee /tmp/bench_fp32.log
    keep /tmp/bench_fp32.log benchmarks/results/mixed_batch_cuda_fp32_quick.json \
      benchmarks/results/mixed_batch_cuda_fp32_quick.png ;;
  *)
    echo "usage: bash benchmarks/gpu_check.sh fetch|gpu|fp32" >&2
    exit 2 ;;
esac
