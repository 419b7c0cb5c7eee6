#!/usr/bin/env bash
# The fourth version 3 attempt (issue: models that hold up on other clinics' images): the fine-tuned
# end of a weight-space interpolation (WiSE-FT, Wortsman et al. 2022). The v3c recipe (BCN20000 with
# its own class weights, top ~70% of the backbone at 5e-5 from Lite0 v2) for 3 epochs, the span in
# which v3c still held HAM10000 validation balanced accuracy; then
# `python -m lesionlib interpolate-weights` mixes its weights with version 2's, and the mixing
# weight is chosen on the validation splits (scripts/pipelines/interpolate_v3d.sh). Resumable:
#   mkdir -p runs-v3d && nohup bash scripts/pipelines/train_v3d_models.sh > runs-v3d/train.log 2>&1 &
set -euo pipefail
runs=${1:-runs-v3d}
mkdir -p "$runs"
python -m lesionlib train --arch efficientnet_lite0 --size 224 --run-dir "$runs/efficientnet_lite0" \
  --init-from weights/efficientnet_lite0.ham10000/model.keras --head-epochs 0 \
  --fine-tune-epochs 3 --fine-tune-lr 5e-5 --warmup-epochs 0.3 --ema 0.998 \
  --class-weight-power 0.8 --class-weight-groups bcn20000 --label-smoothing 0.1 \
  --colour-constancy --augmentation strong --extra-train isic2017 bcn20000 --extra-val bcn20000 \
  --low-resolution 0.3 --verbose 2
