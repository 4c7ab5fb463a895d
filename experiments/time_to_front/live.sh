#!/usr/bin/env bash
# experiments/time_to_front/live.yaml on a two-node Ray cluster bound to loopback
# (one CPU a node), then its report. Resumable: run it again to go on.
# Usage: experiments/time_to_front/live.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled
ray=.venv/bin/ray
$ray start --head --node-ip-address=127.0.0.2 --port=6391 --num-cpus=1 \
  --include-dashboard=false --disable-usage-stats >/dev/null
trap '$ray stop >/dev/null 2>&1 || true' EXIT
$ray start --address=127.0.0.2:6391 --node-ip-address=127.0.0.3 --num-cpus=1 >/dev/null
.venv/bin/explorer sweep experiments/time_to_front/live.yaml --address 127.0.0.2:6391 \
  --output experiments/time_to_front/live --resume --report
