#!/usr/bin/env bash
# The recipe of the shipped model, end to end (about an hour on 2 CPU cores; resumable: re-run it).
# Stage 1 learns from random initialisation at 128 px; stage 2 fine-tunes at 224 px; evaluate fits the
# temperature and the OOD guard on validation data and writes weights/eval/ and weights/MODEL_CARD.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/cxr}
PY=${PY:-.venv/bin/python}
export OMP_WAIT_POLICY=PASSIVE
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }
$PY -m covidviz train --data "$DATA" --run runs/stage1 --size 128 --epochs 40 --patience 10 --lr 1e-3 \
    --threads 2 $(resume runs/stage1)
$PY -m covidviz train --data "$DATA" --run runs/stage2 --init runs/stage1/best.pt --size 224 --epochs 14 \
    --patience 6 --lr 3e-4 --threads 2 --export weights $(resume runs/stage2)
$PY -m covidviz evaluate --data "$DATA"
