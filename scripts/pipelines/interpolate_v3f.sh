#!/usr/bin/env bash
# The sixth version 3 attempt, second step: mix the v3f fine-tuned Lite2
# (scripts/pipelines/train_v3f_models.sh) with Lite2 v3.0.0, the model it started from
# ($runs/start.keras), at several weights (WiSE-FT), each scored on HAM10000 and BCN20000
# validation in the same run (alpha 0 is v3.0.0 itself). The ship rule, fixed before the run:
# the kept alpha has the best mean of the two validation balanced accuracies among the alphas
# that beat v3.0.0 on both; none: not shipped. Writes runs-v3f/wise/interpolation.md.
#   nohup bash scripts/pipelines/interpolate_v3f.sh > runs-v3f/interpolate.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs-v3f}
python -m lesionlib interpolate-weights --start "$runs/start.keras" \
  --run-dir "$runs/efficientnet_lite2" --alphas 0 0.2 0.35 0.5 0.65 0.8 1 \
  --out-dir "$runs/wise"
