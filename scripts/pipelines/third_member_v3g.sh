#!/usr/bin/env bash
# Does a third ensemble member pay? The issue's lever "several models in the ensemble, more than one
# seed": the seventh attempt's fine-tuned Lite0 (runs-v3g/wise/alpha-1.00: Lite0 v2 + 3 epochs with
# class-balanced sampling, kept epoch 2; a second Lite0 run beside the shipped v3.0.0) is packaged
# into a *copy* of weights/ (weights/ itself is untouched), evaluated there, and every combination
# of members scored by choose_ensemble.py on HAM10000 validation (the rule that chooses the
# ensemble) and, for information, on BCN20000 validation. Test figures are written to
# $runs/report3 but play no part in the choice.
# Needs scripts/pipelines/train_v3g_models.sh and interpolate_v3g.sh first.
#   bash scripts/pipelines/third_member_v3g.sh > runs-v3g/third_member.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs-v3g}
copy="$runs/weights3"
rm -rf "$copy"
cp -r weights "$copy"
chmod -R u+w "$copy"
export LESIONLIB_WEIGHTS="$copy"
python -m lesionlib package --run-dir "$runs/wise/alpha-1.00" --id efficientnet_lite0_bal.ham10000 \
  --name "EfficientNet-Lite0 balanced sampling (experiment)" --version 0.1.0 \
  --changes "v3g fine-tune of Lite0 v2 (class-balanced sampling), kept epoch 2" \
  --description "A second Lite0 run, measured as a third ensemble member; not shipped."
python -m lesionlib evaluate --model efficientnet_lite0_bal.ham10000 --weights "$copy" \
  --report-dir "$runs/report3"
python scripts/pipelines/choose_ensemble.py
python scripts/pipelines/choose_ensemble.py --split bcn20000_val
