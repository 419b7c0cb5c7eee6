#!/usr/bin/env bash
# Does another ensemble member pay? (The issue's lever "several models in the ensemble".) A run's
# kept model is packaged into a *copy* of weights/ (weights/ itself is untouched), evaluated there,
# and every combination of members scored by choose_ensemble.py on HAM10000 validation (the rule
# that chooses the ensemble) and, for information, on BCN20000 validation. Test figures are written
# to COPY's report folder but play no part in the choice.
# Usage: bash scripts/pipelines/try_ensemble_member.sh RUN_DIR ID [COPY]
#   RUN_DIR: a training run (best.keras + state.json) or an interpolate-weights mix folder.
#   ID: the id the candidate gets in the copy, e.g. efficientnet_lite1.ham10000.
#   COPY: the folder for the copy of weights/ (default: RUN_DIR/../weights-with-member).
#   CANDIDATE_VERSION (environment, default 0.1.0): the version the candidate gets in the copy.
# Measured so far (reports/ablation.md):
#   bash scripts/pipelines/try_ensemble_member.sh runs-v3g/wise/alpha-1.00 efficientnet_lite0_bal.ham10000
#   bash scripts/pipelines/try_ensemble_member.sh runs-v3h/efficientnet_lite1 efficientnet_lite1.ham10000
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/pipelines/try_ensemble_member.sh RUN_DIR ID [COPY]" >&2
  exit 2
fi
run=$1
id=$2
copy=${3:-$(dirname "$run")/weights-with-member}
rm -rf "$copy"
cp -r weights "$copy"
chmod -R u+w "$copy"
export LESIONLIB_WEIGHTS="$copy"
python -m lesionlib package --run-dir "$run" --id "$id" \
  --name "Candidate member $id (experiment)" --version "${CANDIDATE_VERSION:-0.1.0}" \
  --changes "kept model of $run" \
  --description "Measured as another ensemble member; not shipped."
python -m lesionlib evaluate --model "$id" --weights "$copy" --report-dir "$copy/report"
python scripts/pipelines/choose_ensemble.py
python scripts/pipelines/choose_ensemble.py --split bcn20000_val
