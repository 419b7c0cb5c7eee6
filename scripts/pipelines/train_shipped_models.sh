#!/usr/bin/env bash
# Trains the shipped models one after another (resumable: rerun to continue), on CPU or GPU.
# Usage: bash scripts/pipelines/train_shipped_models.sh [runs-folder]   (log: runs/train.log)
set -euo pipefail
runs=${1:-runs}
mkdir -p "$runs"
python -m lesionlib train --arch efficientnet_lite0 --size 192 --run-dir "$runs/efficientnet_lite0" \
  --head-epochs 2 --fine-tune-epochs 10 --verbose 2
python -m lesionlib train --arch small_cnn --size 96 --run-dir "$runs/small_cnn" --no-imagenet \
  --head-epochs 2 --fine-tune-epochs 10 --batch-size 64 --verbose 2
python -m lesionlib train --arch efficientnet_lite2 --size 224 --run-dir "$runs/efficientnet_lite2" \
  --head-epochs 2 --fine-tune-epochs 6 --verbose 2
