#!/usr/bin/env bash
# Leave-one-out ablation of the version 2 recipe at a short budget (EfficientNet-Lite0 at 160 px,
# 1 head + 3 fine-tune epochs), so each lever costs minutes on 2 CPU cores, not hours. Resumable:
# run it again and each row continues from its checkpoints in runs-ablation/ (git-ignored).
# Then: python scripts/benchmarks/ablation_report.py   (writes reports/ablation.md)
#   nohup bash scripts/benchmarks/ablation.sh > runs-ablation/ablation.log 2>&1 &
#   bash scripts/benchmarks/ablation.sh runs-ablation all_levers mixup   (only these rows)
set -euo pipefail
runs=${1:-runs-ablation}
shift || true
only=" $* "
mkdir -p "$runs"
base=(--arch efficientnet_lite0 --size 160 --head-epochs 1 --fine-tune-epochs 3 --fine-tune-lr 3e-4
      --class-weight-power 0.8 --label-smoothing 0.1 --verbose 2)
full=(--fine-tune-from all --warmup-epochs 1 --ema 0.998 --colour-constancy --augmentation strong
      --extra-train isic2017)
row() {
  local name=$1; shift
  if [[ "$only" != "  " && "$only" != *" $name "* ]]; then return 0; fi
  python -m lesionlib train "${base[@]}" --run-dir "$runs/$name" "$@"
}
row all_levers "${full[@]}"
row no_colour_constancy --fine-tune-from all --warmup-epochs 1 --ema 0.998 --augmentation strong \
  --extra-train isic2017
row no_isic2017 --fine-tune-from all --warmup-epochs 1 --ema 0.998 --colour-constancy \
  --augmentation strong
row basic_augmentation --fine-tune-from all --warmup-epochs 1 --ema 0.998 --colour-constancy \
  --augmentation basic --extra-train isic2017
row no_ema --fine-tune-from all --warmup-epochs 1 --colour-constancy --augmentation strong \
  --extra-train isic2017
row top_of_backbone_only --warmup-epochs 1 --ema 0.998 --colour-constancy --augmentation strong \
  --extra-train isic2017
row no_class_weights "${full[@]}" --class-weight-power 0
# Levers added for version 3 (issue 18): each adds one lever to (or swaps one in) the full recipe.
row logit_adjustment "${full[@]}" --class-weight-power 0 --logit-adjustment 1
row mixup "${full[@]}" --mixup 0.2
row balanced_sampling "${full[@]}" --balanced-sampling
