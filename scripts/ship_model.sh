#!/usr/bin/env bash
# Ship a run's best checkpoint as the new model, with every artifact measured again for it. Run it from a git
# worktree of this repository (not the working copy others edit), then review and commit weights/ there.
#
#   scripts/ship_model.sh RUN_DIR [train flags the run was started with ...]
#   e.g. scripts/ship_model.sh ~/covidviz-runs/os16 --arch densenet121_os16 --size 256 --epochs 6 \
#        --epoch-images 3000 --lr 2e-4 --acquisition 0.5 --patience 6 --precision bf16
#
#   A checkpoint made without epochs (average-weights, scripts/refit_head.py) is exported as it stands: add
#   --export-only, with the flags of the run that trained its features, e.g.
#   scripts/ship_model.sh ~/covidviz-runs/v3-head-acq --export-only --arch densenet121_os8 --size 128 --epochs 5 \
#        --epoch-images 3000 --lr 2e-4 --acquisition 0.5 --outside-lungs 0.3 --precision bf16
#
# Steps (resumable: a finished step leaves a stamp in RUN_DIR/ship/ and is skipped on a re-run). Times measured
# on 2 CPU cores (AVX-512 EPYC, 2026-12-04) for a 256 px stride-16 DenseNet-121:
#   keep      the shipped model and its eval/ under weights/history/vN (N one above the newest there)
#   export    train --resume --export weights: the run's best checkpoint as weights/ (seconds)
#   floor     fit-lung-floor: the lung segmenter's confidence floor on the new model's validation films (5 min)
#   evaluate  temperature, OOD guard, every split and source, the previous model on the same rows (27 min)
#   decision  fit-decision: the screening threshold on validation (seconds); facts
#   quantise  the INT8 graph and its agreement on this CPU's kernels (5 min)
#   localise  explain-check --part localisation, the fast methods (12 min for 123 films)
#   drift     site drift-reference (2 min)
#   shift     measure-shift (3 min)
#   abstain   measure-abstention (about 10 min)
#   compare   compare-build --committed: every comparison run against the new model (4 min)
#   checks    explain-check --part checks, the fast methods (about 45 min for 30 images at 256 px)
#   facts, then bench beside the previous model (3 min)
# Score-CAM is left out of both explain-check parts: 110 s per map at 256 px (stride 16); run it on its own if wanted.
# Then run scripts/recipe_ablation.py --out weights with the recipes worth keeping, and `facts` again.
set -uo pipefail
RUN=${1:?usage: scripts/ship_model.sh RUN_DIR [train flags ...]}; shift
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/cxr}
PY=${PY:-.venv/bin/python}
STAMPS="$RUN/ship"
FAST=(Grad-CAM Grad-CAM++ XGrad-CAM LayerCAM HiResCAM EigenCAM Ablation-CAM)
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$STAMPS"
step() {
  local name=$1; shift
  if [ -f "$STAMPS/$name" ]; then echo "== $name: done before"; return 0; fi
  echo "== $name: start $(date +%T)"
  local t0; t0=$(date +%s)
  if "$@"; then touch "$STAMPS/$name"; echo "== $name: ok in $(( $(date +%s) - t0 )) s"
  else echo "== $name: FAILED after $(( $(date +%s) - t0 )) s"; exit 1; fi
}
keep() {
  local n
  n=$(( $(find weights/history -maxdepth 1 -name 'v*' | sed 's#.*/v##' | sort -n | tail -1) + 1 ))
  mkdir -p "weights/history/v$n/eval" &&
    cp -r weights/MODEL_CARD.md weights/model.json weights/model.safetensors weights/ood.json weights/ood.safetensors \
          weights/split.csv weights/lungs "weights/history/v$n/" &&
    cp weights/eval/*.json weights/eval/*.csv "weights/history/v$n/eval/" &&
    echo "kept the shipped model as weights/history/v$n"
}
step keep keep
step export "$PY" -m covidviz train --data "$DATA" --run "$RUN" --lungs weights --init weights \
  --previous-split weights/split.csv --resume --export weights "$@"
PREVIOUS=$(find weights/history -maxdepth 1 -name 'v*' | sort -V | tail -1)
step floor "$PY" -m covidviz fit-lung-floor --data "$DATA"
step evaluate "$PY" -m covidviz evaluate --data "$DATA" --previous "$PREVIOUS"
step decision "$PY" -m covidviz fit-decision --data "$DATA"
step quantise "$PY" -m covidviz quantise --data "$DATA"
step localise "$PY" -m covidviz explain-check --data "$DATA" --part localisation --methods "${FAST[@]}"
step drift "$PY" -m covidviz site drift-reference --data "$DATA"
step shift "$PY" -m covidviz measure-shift --data "$DATA"
step abstain "$PY" -m covidviz measure-abstention --data "$DATA"
step compare "$PY" -m covidviz compare-build --committed
step checks "$PY" -m covidviz explain-check --data "$DATA" --part checks --methods "${FAST[@]}"
step facts "$PY" -m covidviz facts
step bench bash -c "'$PY' -m covidviz bench --data '$DATA' | tee '$STAMPS/bench.txt'"
echo "== shipped $(python3 -c "import json; print(json.load(open('weights/model.json'))['weights_sha256'][:12])"): review weights/, then commit"
