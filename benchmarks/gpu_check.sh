#!/usr/bin/env bash
# The prepared GPU check: run it from the repository root on a machine with a CUDA GPU, e.g. through the
# device tool:  bash benchmarks/gpu_check.sh > $OUT/gpu_check.json
# It installs nothing: it uses the python3 that holds a CUDA PyTorch (override with PYTHON=...), longify from
# src/, and needs transformers, tokenizers, datasets, accelerate and safetensors importable (a missing one is
# named; carry it as a wheel). One JSON object on stdout, the logs on stderr; exit 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
missing=$("$PY" - <<'PY'
import importlib.util
need = ["torch", "transformers", "tokenizers", "datasets", "accelerate", "safetensors", "yaml", "tqdm"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
    echo "gpu_check: missing Python packages: $missing (carry them as wheels; see docs/performance.md)" >&2
    exit 2
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device visible to torch')"
exec timeout 600 "$PY" benchmarks/gpu_check.py "$@"
