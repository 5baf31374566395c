#!/usr/bin/env bash
# Flame graphs of the gateway under load, as `bench/run.sh` loads it: the shared harness's
# mock upstream (nginx + njs, CPU 0), the gateway with one worker pinned to CPU 1, wrk on
# CPU 0, and py-spy sampling the worker for the length of each load step. The SVGs go to
# bench/results/<date>-<commit>-profile-c<N>.svg.
#   bash bench/profile.sh [CONCURRENCY...]      # default: 16 64
# Needs py-spy (pip install py-spy) and the harness's Debian packages (nginx, wrk).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
HARNESS=${SPILLOVER_BENCH_HARNESS:-$(dirname "$ROOT")/shared/bench}
PYSPY=${PYSPY:-$(command -v py-spy || echo "$ROOT/.venv/bin/py-spy")}
PORT=18110
RUN=/tmp/bench-profile
DURATION=${DURATION:-15}
levels=("${@:-16}")
[ $# -eq 0 ] && levels=(16 64)
[ -x "$PYSPY" ] || { echo "py-spy not found (pip install py-spy, or PYSPY=...)" >&2; exit 1; }
mkdir -p "$RUN/tmp-mock"
sed -e "s#\${RUN}#$RUN#g" -e "s#\${BENCH}#$HARNESS#g" -e "s#\${MOCK_PORT}#18100#g" \
    -e "s#\${SSE_GAP_MS}#5#g" "$HARNESS/mock-nginx.conf" > "$RUN/mock-nginx.conf"
taskset -c 0 nginx -p "$RUN" -c "$RUN/mock-nginx.conf" -e "$RUN/mock-error.log" &
mock=$!
taskset -c 1 "$ROOT/.venv/bin/spillover" serve --config "$HERE/spillover-bench.yaml" \
  --port $PORT --workers 1 --log-level warning > "$RUN/spillover.log" 2>&1 &
gateway=$!
trap 'kill $gateway $mock 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break
  sleep 0.1
done
# The process that serves: the busiest of the gateway and its children after a warm-up (with
# one worker that is the gateway itself; its child is the heavy lane, which idles here).
busiest() {
  for p in $gateway $(pgrep -P $gateway || true); do
    echo "$(awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null || echo 0) $p"
  done | sort -n | tail -1 | cut -d' ' -f2
}
stamp="$(date +%F)-$(git -C "$ROOT" rev-parse --short HEAD)"
for c in "${levels[@]}"; do
  taskset -c 0 wrk -t1 -c"$c" -d3s -s "$HARNESS/chat.lua" "http://127.0.0.1:$PORT/v1/chat/completions" \
    >/dev/null 2>&1 || true  # warm-up
  worker=$(busiest)
  out="$HERE/results/$stamp-profile-c$c.${EXT:-svg}"
  "$PYSPY" record --pid "$worker" --duration "$DURATION" --rate 200 --nonblocking \
    --format "${FORMAT:-flamegraph}" -o "$out" > "$RUN/py-spy-c$c.log" 2>&1 &
  spy=$!
  taskset -c 0 wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$HARNESS/chat.lua" \
    "http://127.0.0.1:$PORT/v1/chat/completions" | grep -E "Requests/sec|99%|50%" || true
  wait $spy || true
  echo "c=$c: $out"
done
