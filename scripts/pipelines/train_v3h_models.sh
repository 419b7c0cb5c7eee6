#!/usr/bin/env bash
# The eighth version 3 attempt: a third architecture for the ensemble (the issue's "Lite0, Lite1
# and Lite2"). EfficientNet-Lite1 has never been trained in this project; the ensemble's two
# members are both fine-tunes of earlier versions, and a second Lite0 run added only +0.003 as a
# third member (scripts/pipelines/try_ensemble_member.sh). Lite1 from ImageNet on HAM10000 + ISIC 2017
# + BCN20000 train with the version 3 levers (BCN20000's own class weights used as sampling
# probabilities, resolution augmentation 0.3, colour constancy, strong augmentation, EMA), one head
# epoch and 5 epochs of the top ~70% of the backbone (a cosine after a 0.3-epoch warm-up), sized to
# finish in ~50 minutes on a 2-core AVX-512 machine (benchmark_training.py first elsewhere).
# Judged on validation only, as a third ensemble member beside the shipped models
# (`bash scripts/pipelines/try_ensemble_member.sh runs-v3h/efficientnet_lite1
# efficientnet_lite1.ham10000`; reports/ablation.md).
# Usage: bash scripts/pipelines/train_v3h_models.sh [RUNS [ARCH [SEED]]]   (default runs-v3h,
#   efficientnet_lite1, seed 20261121; train_v3i_models.sh is the same recipe for efficientnet_lite0;
#   `runs-v3j efficientnet_lite0 20261207` is its second seed). Resumable:
#   mkdir -p runs-v3h && nohup bash scripts/pipelines/train_v3h_models.sh > runs-v3h/train.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs-v3h}
arch=${2:-efficientnet_lite1}
seed=${3:-20261121}
mkdir -p "$runs"
python -m lesionlib train --arch "$arch" --size 224 --run-dir "$runs/$arch" --seed "$seed" \
  --head-epochs 1 --fine-tune-epochs 5 --fine-tune-lr 3e-4 --warmup-epochs 0.3 --ema 0.998 \
  --class-weight-power 0.8 --class-weight-groups bcn20000 --label-smoothing 0.1 \
  --colour-constancy --augmentation strong --extra-train isic2017 bcn20000 --extra-val bcn20000 \
  --low-resolution 0.3 --balanced-sampling --verbose 2
