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
# sparsity bits: the paper's two (SqueezeNet paper, Table 2), then harder ones
for setting in "0.33 8" "0.33 6" "0.5 5" "0.6 4" "0.7 4"; do
  set -- $setting
  out=$here/files/squeezenet1_1-sp$(python3 -c "print(round(100 * $1))")-b$2.sqz
  if [ ! -f "$out" ]; then
    .venv/bin/explorer compress "$net" --sparsity "$1" --bits "$2" \
      --retrain-epochs 2 --finetune-epochs 1 --out "$out" --json "${out%.sqz}.json"
  fi
done
# A small front: the broad Fire sweep's kept networks (experiments/pareto_search; their
# weights are in that sweep folder once it has run) x two compression settings.
sweep=experiments/pareto_search/broad_fire
for trial in broad_fire-p0003-s0 broad_fire-p0000-s0 broad_fire-p0002-s0; do
  for setting in "0.5 5" "0.7 4"; do
    set -- $setting
    out=$here/front/$trial-sp$(python3 -c "print(round(100 * $1))")-b$2.sqz
    if [ ! -f "$out" ]; then
      .venv/bin/explorer compress "$sweep" --trial "$trial" --sparsity "$1" --bits "$2" \
        --retrain-epochs 2 --finetune-epochs 1 --out "$out" --json "${out%.sqz}.json"
    fi
  done
done
.venv/bin/python "$here/summarize.py" --verify --plot > "$here/results.md"
