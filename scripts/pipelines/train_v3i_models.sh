#!/usr/bin/env bash
# The ninth version 3 attempt: EfficientNet-Lite0 from ImageNet with the eighth attempt's recipe
# (train_v3h_models.sh, called with the Lite0 architecture).
# Lite1 trained that way (train_v3h_models.sh) became the best model on the second clinic
# (BCN20000 validation 0.553 / 0.853) while every fine-tune of a HAM10000-only model stayed at
# 0.44-0.46: does the start, not the architecture, make the difference? The same levers (BCN20000's
# own class weights used as sampling probabilities, resolution augmentation 0.3, colour constancy,
# strong augmentation, EMA 0.998), one head epoch and 5 epochs of the top ~70% of the backbone (a
# cosine after a 0.3-epoch warm-up), sized to finish in ~50 minutes on a 2-core AVX-512 machine
# (benchmark_training.py first elsewhere; 47 minutes there). Judged by the ship rule against Lite0
# v3.0.0 (reports/training_v3.md, ninth attempt: better on both validation splits, worse on PH2,
# not shipped; the kept model is sealed in candidates/efficientnet_lite0.ham10000).
# Resumable:
#   mkdir -p runs-v3i && nohup bash scripts/pipelines/train_v3i_models.sh > runs-v3i/train.log 2>&1 &
set -euo pipefail
exec bash "$(dirname "$0")/train_v3h_models.sh" "${1:-runs-v3i}" efficientnet_lite0
