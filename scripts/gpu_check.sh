#!/usr/bin/env bash
# GPU check (issue 7), one command on a machine with an NVIDIA GPU and JAX with CUDA already installed:
#
#     bash scripts/gpu_check.sh DATA_DIR
#
# Runs Kim's full MR protocol (10 folds x 25 epochs, CNN-rand, the folds trained together as one vmapped program)
# and one SST-1 phrase-level epoch, and prints wall times and accuracies as JSON lines. Goals on one H200: the
# whole MR protocol in under 60 s; an SST-1 phrase epoch in under 1 s.
#
# MR_EPOCHS=1 bash scripts/gpu_check.sh DATA_DIR is a smoke run of the same commands (e.g. on a CPU, a few minutes).
#
# Nothing is downloaded. Packages the GPU image lacks (datasets and its small dependencies) travel as wheels in
# .whl/ beside this repository; make them on a machine with pip access:
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#         datasets multiprocess dill tensorboardX
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR="${1:-${JAXCNN_DATA_DIR:-../shared/data}}"
MR_EPOCHS="${MR_EPOCHS:-25}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
OUT="${OUT:-$(mktemp -d)}"
python3 -c "import jax; print('devices:', jax.devices())"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

start=$(date +%s.%N)
python3 -m jaxcnn.cli -q cv --dataset mr --variant rand --folds 10 --seeds 1 --epochs "$MR_EPOCHS" --data-dir "$DATA_DIR" \
  --workdir "$OUT/mr-cv" --no-progress --no-tensorboard
end=$(date +%s.%N)
python3 - "$OUT/mr-cv" "$start" "$end" <<'PY'
import json, pathlib, sys
res = json.loads((pathlib.Path(sys.argv[1]) / "results.json").read_text())
print(json.dumps({"check": f"mr_10fold_{res['epochs']}epochs", "wall_seconds": float(sys.argv[3]) - float(sys.argv[2]),
                  "mean_test_accuracy": res["aggregate"]["members"]["mean"], "per_fold": [m["test_accuracy"] for m in res["members"]]}))
PY

start=$(date +%s.%N)
python3 -m jaxcnn.cli -q train --dataset sst1 --variant rand --epochs 1 --data-dir "$DATA_DIR" \
  --workdir "$OUT/sst1-epoch" --no-progress --no-tensorboard --no-plots
end=$(date +%s.%N)
python3 - "$OUT/sst1-epoch" "$start" "$end" <<'PY'
import json, pathlib, sys
s = json.loads((pathlib.Path(sys.argv[1]) / "summary.json").read_text())
print(json.dumps({"check": "sst1_phrase_epoch", "process_wall_seconds": float(sys.argv[3]) - float(sys.argv[2]),
                  "epoch_train_seconds": s["train_seconds"], "train_examples": s["train_examples"],
                  "train_examples_per_second": s["train_examples_per_second"], "test_accuracy": s["test_accuracy"]}))
PY
