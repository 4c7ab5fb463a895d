#!/usr/bin/env bash
# The broad Fire sweep's int8 front after Deep Compression: one kept seed of each
# front architecture to 50% sparsity and 4 bits (six epochs of retraining at the
# recipe's rate, one of fine-tuning: the setting that lost nothing on SqueezeNet 1.1,
# experiments/deep_compression). Resumable: finished files are kept.
# Usage: experiments/design_space/compress_front.sh [SWEEP]
set -euo pipefail
cd "$(dirname "$0")/../.."
here=experiments/design_space
sweep=${1:-experiments/pareto_search/broad_fire}
mkdir -p "$here/compressed"
for trial in $(.venv/bin/python "$here/study.py" --front-trials "$sweep"); do
  out=$here/compressed/$trial-sp50-b4.sqz
  if [ ! -f "$out" ]; then
    .venv/bin/explorer compress "$sweep" --trial "$trial" --sparsity 0.5 --bits 4 \
      --retrain-epochs 6 --lr-scale 1.0 --finetune-epochs 1 --out "$out" \
      --json "${out%.sqz}.json"
  fi
done
.venv/bin/python "$here/study.py" "$sweep" > "$here/study.md"
