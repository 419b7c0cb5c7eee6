#!/usr/bin/env bash
# The sixth version 3 attempt (issue: models that hold up on other clinics' images): Lite2 v3.0.0,
# which had one epoch on HAM10000 + ISIC 2017 + BCN20000 train (scripts/pipelines/
# train_v3e_models.sh) and is the ensemble's weaker member, given three more epochs of the same
# recipe (BCN20000 with its own class weights, top ~70% of the backbone, resolution augmentation
# 0.3, EMA 0.998) on a new cosine from 1e-4. Sized from this machine's measurements: a Lite2 epoch
# of 17,637 images took 574 s on an AVX-512 + AMX machine (load 2.2), so the run, its mixes and
# shipping fit one session. Then scripts/pipelines/interpolate_v3f.sh mixes it with v3.0.0.
# --init-from names a copy of the shipped Lite2 **v3.0.0** (sha256 8a1d4fed..., as
# weights/efficientnet_lite2.ham10000/model.keras). Outcome (reports/training_v3.md): better on
# both validation splits, worse on PH2; not shipped.
# Resumable:
#   mkdir -p runs-v3f && nohup bash scripts/pipelines/train_v3f_models.sh > runs-v3f/train.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs-v3f}
mkdir -p "$runs"
if [ ! -f "$runs/start.keras" ]; then  # pin the starting point: the shipped file changes on ship
  cp weights/efficientnet_lite2.ham10000/model.keras "$runs/start.keras"
fi
python -m lesionlib train --arch efficientnet_lite2 --size 224 --run-dir "$runs/efficientnet_lite2" \
  --init-from "$runs/start.keras" --head-epochs 0 \
  --fine-tune-epochs 3 --fine-tune-lr 1e-4 --warmup-epochs 0.3 --ema 0.998 \
  --class-weight-power 0.8 --class-weight-groups bcn20000 --label-smoothing 0.1 \
  --augmentation strong --extra-train isic2017 bcn20000 --extra-val bcn20000 \
  --low-resolution 0.3 --verbose 2
