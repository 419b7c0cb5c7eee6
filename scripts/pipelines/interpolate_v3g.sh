#!/usr/bin/env bash
# The seventh version 3 attempt, second step: mix the v3g fine-tuned Lite0
# (scripts/pipelines/train_v3g_models.sh, balanced sampling) with Lite0 v2.0.0, the model it started
# from ($runs/start.keras), at the alphas the fourth attempt used (interpolate_v3d.sh), each scored on
# HAM10000 and BCN20000 validation (alpha 0 is v2 itself). The rule, fixed before the run: a
# candidate for Lite0 v3.1 must beat the shipped Lite0 v3.0.0 (the v3d mix at alpha 0.35: HAM10000
# validation balanced accuracy 0.7728, BCN20000 0.4382) on both; of those, the best mean of the two.
#   nohup bash scripts/pipelines/interpolate_v3g.sh > runs-v3g/interpolate.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs-v3g}
python -m lesionlib interpolate-weights --start "$runs/start.keras" \
  --run-dir "$runs/efficientnet_lite0" --alphas 0 0.2 0.35 0.5 0.65 0.8 1 \
  --out-dir "$runs/wise"
