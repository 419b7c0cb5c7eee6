#!/usr/bin/env bash
# Package the version 2 runs into weights/, choose and define the ensemble on validation, evaluate
# everything, fit every quality gate and measure it, export the edge model, build the similar-case
# indices and embedding maps, and rewrite the reports that read the models. Reproduces every
# figure in README.md, the model cards and reports/.
# Usage: bash scripts/pipelines/ship_models.sh [RUNS [MODEL ...]]   (needs ../shared/data or LESIONLIB_DATA)
#   RUNS: the folder of scripts/pipelines/train_v2_models.sh (default runs-v2).
#   MODEL: efficientnet_lite0 and/or efficientnet_lite2 (default both): package only those runs;
#   everything downstream of the weights is rebuilt either way.
#   ENSEMBLE_VERSION (environment, default 3.0.0): the version given to the ensemble.
#   LITE0_RUN, LITE0_VERSION, LITE0_CHANGES (environment): another run folder for Lite0 (e.g. a
#   weight-space mix of interpolate-weights), its version (default 2.0.0) and what changed.
#   LITE2_RUN, LITE2_VERSION, LITE2_CHANGES: the same for Lite2.
# Version 3 of Lite0 (the WiSE-FT mix, alpha chosen on validation by interpolate_v3d.sh):
#   LITE0_RUN=runs-v3d/wise/alpha-0.35 LITE0_VERSION=3.0.0 LITE0_CHANGES="..." \
#   ENSEMBLE_VERSION=3.0.0 bash scripts/pipelines/ship_models.sh runs-v3d efficientnet_lite0
# Version 2 shipped in two steps: Lite0 v2 with ensemble 2.0.0 (Lite0 v2 + Lite2 v1), then
#   ENSEMBLE_VERSION=3.0.0 bash scripts/pipelines/ship_models.sh runs-v2 efficientnet_lite2
# The small CNN baseline stays at version 1.0.0 (scripts/pipelines/train_shipped_models.sh, then
# `package --run-dir runs/small_cnn --id small_cnn.ham10000`).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs-v2}
shift || true
if [ $# -gt 0 ]; then packaged=("$@"); else packaged=(efficientnet_lite0 efficientnet_lite2); fi
ensemble_version=${ENSEMBLE_VERSION:-3.0.0}
recipe="v2 recipe (scripts/pipelines/train_v2_models.sh): Shades of Gray colour constancy in the graph, \
strong augmentation, class weights (1/f)^0.8, label smoothing 0.1, HAM10000 + ISIC 2017 train"
for arch in "${packaged[@]}"; do
  case "$arch" in
    efficientnet_lite0)
      python -m lesionlib package --run-dir "${LITE0_RUN:-$runs/efficientnet_lite0}" \
        --id efficientnet_lite0.ham10000 --name "EfficientNet-Lite0 (fast, mobile)" \
        --version "${LITE0_VERSION:-2.0.0}" --changes "${LITE0_CHANGES:-$recipe; whole backbone \
fine-tuned 12 epochs (1-epoch warm-up, cosine, EMA 0.998), 224 px (was 192 px, top of the \
backbone, 6 epochs)}" \
        --description "Small and fast (3.4M parameters, 224 px): fit for phones and edge devices." ;;
    efficientnet_lite2)
      python -m lesionlib package --run-dir "${LITE2_RUN:-$runs/efficientnet_lite2}" \
        --id efficientnet_lite2.ham10000 --name "EfficientNet-Lite2 (accurate)" \
        --version "${LITE2_VERSION:-2.0.0}" --changes "${LITE2_CHANGES:-$recipe; whole backbone \
fine-tuned 4 epochs (1-epoch warm-up, cosine, EMA 0.998), 224 px (was 224 px from block6 of the \
backbone, 6 epochs)}" \
        --description "Larger EfficientNet-Lite (4.9M parameters, 224 px): the most accurate single model here on the HAM10000 test split and on PH2." ;;
    *) echo "ship_models.sh: unknown model $arch (expected efficientnet_lite0 or efficientnet_lite2)" >&2
       exit 2 ;;
  esac
  python -m lesionlib evaluate --model "$arch.ham10000"
done
# Members chosen on the validation split only: scripts/pipelines/choose_ensemble.py scores every
# combination (mean of validation balanced accuracy and melanoma AUC), prints the table and
# whether the ensemble beats its best member; the best combination is defined below.
python scripts/pipelines/choose_ensemble.py
chosen=$(python scripts/pipelines/choose_ensemble.py --members)  # a failure stops the script (set -e)
read -r -a members <<< "$chosen"
name=$(python scripts/pipelines/choose_ensemble.py --name)
python -m lesionlib ensemble --id ensemble.ham10000 --name "$name" \
  --members "${members[@]}" --version "$ensemble_version" \
  --changes "members chosen on validation by scripts/pipelines/choose_ensemble.py: ${name#Ensemble }" \
  --description "Mean of the calibrated probabilities of its members, recalibrated."
python -m lesionlib evaluate --model ensemble.ham10000
python -m lesionlib evaluate --summary-only
# The repackaged models' own quality gates and "review carefully" thresholds (on their stored
# validation predictions; the small CNN's and an unchanged model's gate stay as fitted); the
# ensemble's gate combines its members' gates, so it comes last.
ids=()
for arch in "${packaged[@]}"; do ids+=("$arch.ham10000"); done
for model in "${ids[@]}" ensemble.ham10000; do
  python -m lesionlib fit-gate --model "$model"
done
# Everything derived from the repackaged weights: the int8 edge export of Lite2 (when Lite2 was
# repackaged; reports/edge_export.md), similar-case indices, embedding maps, the quality-gate
# benchmark of the changed models, the label audit and the faithfulness report. The ensemble is
# named too: it was defined anew above, perhaps without any of the repackaged models.
bash scripts/pipelines/rebuild_derived.sh --had-index "${ids[@]}" ensemble.ham10000
