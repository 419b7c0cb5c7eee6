#!/usr/bin/env bash
# The seventh version 3 attempt: does class-balanced sampling (the best short-budget lever of
# reports/ablation.md, +0.042 validation balanced accuracy at 160 px) hold at 224 px with the
# second clinic? The fourth attempt's recipe (scripts/pipelines/train_v3d_models.sh: Lite0 v2 on
# HAM10000 + ISIC 2017 + BCN20000 train, BCN20000 with its own class weights, top ~70% of the
# backbone at 5e-5, a 3-epoch cosine, EMA, resolution augmentation 0.3) with one change:
# --balanced-sampling (the same class weights drawn as sampling probabilities, the loss
# unweighted). Its per-epoch validation figures compare one to one with v3d's (same schedule).
# Starts from Lite0 **v2.0.0**, taken from git history (sha256 aa2dd896..., the parent in Lite0
# v3's card), so the comparison holds after Lite0 v3 replaced it in weights/.
# Resumable:
#   mkdir -p runs-v3g && nohup bash scripts/pipelines/train_v3g_models.sh > runs-v3g/train.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs-v3g}
mkdir -p "$runs"
if [ ! -f "$runs/start.keras" ]; then
  git show 2655b93~1:weights/efficientnet_lite0.ham10000/model.keras > "$runs/start.keras"
fi
python -m lesionlib train --arch efficientnet_lite0 --size 224 --run-dir "$runs/efficientnet_lite0" \
  --init-from "$runs/start.keras" --head-epochs 0 \
  --fine-tune-epochs 3 --fine-tune-lr 5e-5 --warmup-epochs 0.3 --ema 0.998 \
  --class-weight-power 0.8 --class-weight-groups bcn20000 --label-smoothing 0.1 \
  --colour-constancy --augmentation strong --extra-train isic2017 bcn20000 --extra-val bcn20000 \
  --low-resolution 0.3 --balanced-sampling --verbose 2
