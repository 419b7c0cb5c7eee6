#!/usr/bin/env bash
# The fifth version 3 attempt (issue: models that hold up on other clinics' images): Lite2, the
# ensemble's other member, given the recipe that made Lite0 v3 (scripts/pipelines/
# train_v3d_models.sh): Lite2 v1 fine-tuned on HAM10000 + ISIC 2017 + BCN20000 train (BCN20000
# with its own class weights, top ~70% of the backbone, resolution augmentation 0.3, EMA), at
# 1e-4 (Lite2 v1 was trained on HAM10000 alone and is further from converged than Lite0 v2), for
# 1 epoch: the run, its mixes and shipping (~1.5 h with scripts/pipelines/rebuild_derived.sh)
# must end inside one session (the epoch of 17,637 images took 574 s on an AVX-512 + AMX machine,
# load 2.2; scripts/benchmarks/benchmark_training.py measured Lite2 at 12-20 images/s there).
# Then scripts/pipelines/interpolate_v3e.sh mixes it with Lite2 v1 (WiSE-FT).
# Resumable:
#   mkdir -p runs-v3e && nohup bash scripts/pipelines/train_v3e_models.sh > runs-v3e/train.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs-v3e}
mkdir -p "$runs"
python -m lesionlib train --arch efficientnet_lite2 --size 224 --run-dir "$runs/efficientnet_lite2" \
  --init-from weights/efficientnet_lite2.ham10000/model.keras --head-epochs 0 \
  --fine-tune-epochs 1 --fine-tune-lr 1e-4 --warmup-epochs 0.3 --ema 0.998 \
  --class-weight-power 0.8 --class-weight-groups bcn20000 --label-smoothing 0.1 \
  --augmentation strong --extra-train isic2017 bcn20000 --extra-val bcn20000 \
  --low-resolution 0.3 --verbose 2
