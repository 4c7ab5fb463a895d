#!/usr/bin/env bash
# Reproduce the SqueezeNet design-space studies with the tool's own commands.
# Resumable: run it again after an interruption and finished trials are kept.
# Usage: experiments/squeezenet_dse/run.sh [study ...]   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/../.."
here=experiments/squeezenet_dse
studies=("${@:-squeeze_ratio pct3x3 bypass versions}")
for study in ${studies[@]}; do
  .venv/bin/explorer sweep "spaces/$study.yaml" --output "$here/$study" --resume
  .venv/bin/explorer report "$here/$study" --out "$here/$study/report"
done
