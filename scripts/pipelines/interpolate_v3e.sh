#!/usr/bin/env bash
# The fifth version 3 attempt, second step: mix the v3e fine-tuned Lite2
# (scripts/pipelines/train_v3e_models.sh) with Lite2 v1, the model it started from, at several
# weights (WiSE-FT), each scored on HAM10000 and BCN20000 validation in the same run (alpha 0 is
# version 1 itself). The ship rule, fixed before the run: the kept alpha has the best mean of the
# two validation balanced accuracies among the alphas that beat version 1 on both; none: not
# shipped. Writes runs-v3e/wise/interpolation.md and one run folder per alpha.
#   nohup bash scripts/pipelines/interpolate_v3e.sh > runs-v3e/interpolate.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs-v3e}
python -m lesionlib interpolate-weights --start weights/efficientnet_lite2.ham10000/model.keras \
  --run-dir "$runs/efficientnet_lite2" --alphas 0 0.2 0.35 0.5 0.65 0.8 1 \
  --out-dir "$runs/wise"
