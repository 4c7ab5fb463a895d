#!/usr/bin/env bash
# experiments/time_to_front/live.yaml on a two-node Ray cluster bound to loopback
# (127.0.0.2 and 127.0.0.3, one CPU each), then its report. Resumable: run it again
# to go on. Stops only this cluster's processes (`ray stop` would stop every Ray here).
# Usage: experiments/time_to_front/live.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAY_AUTH_MODE=disabled   # a node joining later is refused a token otherwise
unset RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER   # it pins one node to 127.0.0.1; here each has its own
port=6391
ray=.venv/bin/ray
ours() { pgrep -f -- "--gcs_server_port=$port|127.0.0.2:$port" >/dev/null; }
stop() {  # TERM, then KILL what is left after 10 s (the GCS server outlives a TERM)
  pkill -f -- "--gcs_server_port=$port|127.0.0.2:$port" || true
  for _ in $(seq 50); do ours || return 0; sleep 0.2; done
  pkill -KILL -f -- "--gcs_server_port=$port|127.0.0.2:$port" || true
}
trap stop EXIT
$ray start --head --node-ip-address=127.0.0.2 --port=$port --num-cpus=1 \
  --include-dashboard=false --disable-usage-stats >/dev/null
$ray start --address=127.0.0.2:$port --node-ip-address=127.0.0.3 --num-cpus=1 \
  --disable-usage-stats >/dev/null
.venv/bin/explorer sweep experiments/time_to_front/live.yaml --address 127.0.0.2:$port \
  --output experiments/time_to_front/live --resume --report
