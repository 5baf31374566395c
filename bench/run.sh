#!/usr/bin/env bash
# Spillover side by side with nginx, LiteLLM proxy and Portkey in one run of the shared
# harness (../shared/bench). The gateway runs with one worker pinned to CPU 1, like the peers;
# beside it, "bare": the same server and upstream client with no pipeline (bench/passthrough.py),
# so the data plane's share shows apart from the pipeline's.
#   bash bench/run.sh                          # the full matrix (about 8 minutes)
#   bash bench/run.sh --only none --duration 5 # Spillover alone against direct-to-mock
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
HARNESS=${SPILLOVER_BENCH_HARNESS:-$(dirname "$ROOT")/shared/bench}
PORT=18110
BARE_PORT=18111
[ -x "$ROOT/.venv/bin/spillover" ] || make -C "$ROOT" install
[ -f "$HARNESS/run_gateways.sh" ] || { echo "harness not found at $HARNESS" >&2; exit 1; }

only="nginx,litellm,portkey"
# Raw results are kept, named by date and commit, beside the tables in docs/performance.md.
args=(--json "$HERE/results/$(date +%F)-$(git -C "$ROOT" rev-parse --short HEAD)-gateways.json")
while (($#)); do
  case $1 in
    --only) only=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

mkdir -p /tmp/bench-run
taskset -c 1 "$ROOT/.venv/bin/spillover" serve --config "$HERE/spillover-bench.yaml" \
  --port $PORT --workers 1 --log-level warning > /tmp/bench-run/spillover.log 2>&1 &
pid=$!
PYTHONPATH="$ROOT" taskset -c 1 "$ROOT/.venv/bin/python" -m bench.passthrough --port $BARE_PORT \
  > /tmp/bench-run/passthrough.log 2>&1 &
bare=$!
trap 'kill $pid $bare 2>/dev/null; wait $pid $bare 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && curl -sf "http://127.0.0.1:$BARE_PORT/" >/dev/null && break
  sleep 0.1
done
bash "$HARNESS/run_gateways.sh" --only "$only" \
  --extra "spillover=http://127.0.0.1:$PORT/v1" --extra "bare=http://127.0.0.1:$BARE_PORT/v1" \
  "${args[@]}"
