#!/usr/bin/env bash
# Deep Compression of SqueezeNet 1.1, trained with the default recipe on the full
# Fashion-MNIST, at the paper's settings (33% sparsity, 8 and 6 bits) and harder ones.
# Resumable: a trained network and finished files are kept; run it again to go on.
# Usage: experiments/deep_compression/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
here=experiments/deep_compression
net=$here/squeezenet1_1   # the float32 checkpoint (not in git: run.sh trains it again)
if [ ! -d "$net/seed-0" ]; then
  .venv/bin/explorer train --model squeezenet1_1 --dataset fashion_mnist \
    --save "$net" --json "$here/squeezenet1_1.train.json"
fi
# sparsity bits retrain-epochs lr-scale: the paper's two (SqueezeNet paper, Table 2) with a
# short retraining at a tenth of the rate, then harder ones, retrained longer
for setting in "0.33 8 2 0.1" "0.33 6 2 0.1" "0.5 5 2 0.1" "0.6 4 4 0.3" "0.5 4 6 1.0"; do
  set -- $setting
  name=squeezenet1_1-sp$(python3 -c "print(round(100 * $1))")-b$2
  [ "$3 $4" = "2 0.1" ] || name=$name-r$3
  out=$here/files/$name.sqz
  if [ ! -f "$out" ]; then
    .venv/bin/explorer compress "$net" --sparsity "$1" --bits "$2" --retrain-epochs "$3" \
      --lr-scale "$4" --finetune-epochs 1 --out "$out" --json "${out%.sqz}.json"
  fi
done
# Toward 20x and 30x: 80-90% sparsity, uniform or per layer (rates allocated from a sensitivity scan
# of the trained network on 2,000 training images, kept in sensitivity.json), reached at once
# or in gradual prune-retrain rounds, every retraining at the full rate.
# sparsity bits rounds epochs-per-round per-layer(1/0)
for setting in "0.8 4 3 2 1" "0.8 4 1 6 0" "0.85 4 3 2 1" "0.9 4 3 2 1" "0.9 4 3 3 1"; do
  set -- $setting
  name=squeezenet1_1-sp$(python3 -c "print(round(100 * $1))")-b$2-$3x$4
  extra=()
  if [ "$5" = 1 ]; then name=$name-pl; extra=(--per-layer --scan "$here/sensitivity.json"); fi
  out=$here/files/$name.sqz
  if [ ! -f "$out" ]; then
    .venv/bin/explorer compress "$net" --sparsity "$1" --bits "$2" --rounds "$3" \
      --retrain-epochs "$4" --lr-scale 1.0 --finetune-epochs 1 "${extra[@]}" \
      --out "$out" --json "${out%.sqz}.json"
  fi
done
# A small front: the broad Fire sweep's kept networks (experiments/pareto_search; their
# weights are in that sweep folder once it has run) x two compression settings.
sweep=experiments/pareto_search/broad_fire
for trial in broad_fire-p0003-s0 broad_fire-p0000-s0 broad_fire-p0002-s0; do
  for setting in "0.5 4" "0.7 4"; do
    set -- $setting
    out=$here/front/$trial-sp$(python3 -c "print(round(100 * $1))")-b$2.sqz
    if [ ! -f "$out" ]; then
      .venv/bin/explorer compress "$sweep" --trial "$trial" --sparsity "$1" --bits "$2" \
        --retrain-epochs 6 --lr-scale 1.0 --finetune-epochs 1 --out "$out" \
        --json "${out%.sqz}.json"
    fi
  done
done
.venv/bin/python "$here/summarize.py" --verify --plot > "$here/results.md"
