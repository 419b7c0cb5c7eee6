#!/usr/bin/env bash
# The version 2 training campaign (issue: a real training campaign). Resumable: run it again and
# every model continues from its last epoch checkpoint in runs-v2/ (git-ignored); a model whose
# run finished is skipped. Log: runs-v2/train.log when started as below.
#   nohup bash scripts/pipelines/train_v2_models.sh > runs-v2/train.log 2>&1 &
# Train only some of the models by naming them after the run folder:
#   bash scripts/pipelines/train_v2_models.sh runs-v2 efficientnet_lite2
# Recipe (each lever measured in reports/ablation.md): HAM10000 lesion-grouped train + ISIC 2017
# train; Shades of Gray colour constancy inside the graph; 1 head epoch, then the whole backbone
# (BatchNorm frozen) with a 1-epoch warm-up, cosine decay and an EMA of the weights; strong
# per-image augmentation; class weights (1/frequency)^0.8; label smoothing 0.1.
set -euo pipefail
runs=${1:-runs-v2}
shift || true
wanted=("${@:-efficientnet_lite0 efficientnet_lite2 efficientnet_lite1}")
wanted=" ${wanted[*]} "
mkdir -p "$runs"
common=(--head-epochs 1 --fine-tune-from all --warmup-epochs 1 --ema 0.998
        --class-weight-power 0.8 --label-smoothing 0.1 --colour-constancy --augmentation strong
        --extra-train isic2017 --verbose 2)
want() { [[ "$wanted" == *" $1 "* ]]; }
if want efficientnet_lite0; then
  python -m lesionlib train --arch efficientnet_lite0 --size 224 --run-dir "$runs/efficientnet_lite0" \
    --fine-tune-epochs 12 --fine-tune-lr 3e-4 "${common[@]}"
fi
if want efficientnet_lite2; then
  # 4 fine-tuning epochs (cosine over 3 after the warm-up): one epoch of Lite2 at 224 px takes about
  # 25 min on the 2 CPU cores (measured), so the run fits one session beside shipping it.
  python -m lesionlib train --arch efficientnet_lite2 --size 224 --run-dir "$runs/efficientnet_lite2" \
    --fine-tune-epochs 4 --fine-tune-lr 3e-4 "${common[@]}"
fi
if want efficientnet_lite1; then
  python -m lesionlib train --arch efficientnet_lite1 --size 224 --run-dir "$runs/efficientnet_lite1" \
    --fine-tune-epochs 12 --fine-tune-lr 3e-4 "${common[@]}"
fi
