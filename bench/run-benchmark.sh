#!/usr/bin/env bash
# Benchmarks the one-shot `run` command on the simulated model: several runs, each on a fresh store,
# then the median items/s (after submission) and peak memory the command itself reports.
#
#   bench/run-benchmark.sh [ITEMS|FILE.jsonl] [MAX_RUNNING] [RUNS] [LATENCY]
#   bench/run-benchmark.sh 100000 256 3 00:00:00      # 100,000 generated items, zero latency
#   bench/run-benchmark.sh samples/sample.jsonl 16 3  # the sample
#   STORE=postgres bench/run-benchmark.sh 100000 256 3  # on a private PostgreSQL server (fsync on), a fresh database per run
set -euo pipefail
cd "$(dirname "$0")/.."
source="${1:-100000}"
max_running="${2:-256}"
runs="${3:-3}"
latency="${4:-00:00:00}"

work=$(mktemp -d)
store_kind="${STORE:-sqlite}"
if [ "$store_kind" = postgres ]; then
  pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  bench/postgres.sh start "$work/pg" "$pg_port"
  trap 'bench/postgres.sh stop "$work/pg"; rm -rf "$work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
if [ -f "$source" ]; then
  cp "$source" "$work/input.jsonl"
else
  awk -v n="$source" 'BEGIN { for (i = 0; i < n; i++) printf "{\"custom_id\":\"req-%07d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Summarise document %d in one sentence.\"}],\"max_tokens\":64}}\n", i, i }' > "$work/input.jsonl"
fi
items=$(wc -l < "$work/input.jsonl")

dotnet build src/Silo -c Release -v quiet -nologo > /dev/null
silo=src/Silo/bin/Release/net10.0/Nightshift.Silo.dll

echo "items=$items max-running=$max_running latency=$latency runs=$runs store=$store_kind"
rates=(); memories=(); walls=()
for run in $(seq 1 "$runs"); do
  rm -rf "$work/store"
  store="$work/store/nightshift.db"
  if [ "$store_kind" = postgres ]; then
    bench/postgres.sh createdb "$pg_port" "bench_$run"
    store="Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=bench_$run"
  fi
  Nightshift__Simulated__LatencyMin="$latency" Nightshift__Simulated__LatencyMax="$latency" \
    dotnet "$silo" run "$work/input.jsonl" --out "$work/results.jsonl" --store "$store" \
    --max-running "$max_running" > "$work/run.log" 2>&1
  summary=$(grep '^Took ' "$work/run.log")
  wall=$(sed -E 's/^Took ([0-9.]+) s.*/\1/' <<< "$summary")
  rate=$(sed -E 's/.* ([0-9]+) items\/s.*/\1/' <<< "$summary")
  memory=$(sed -E 's/.*peak memory ([0-9]+) MB.*/\1/' <<< "$summary")
  echo "run $run: $rate items/s after submission, ${wall} s in all, peak memory $memory MB"
  rates+=("$rate"); memories+=("$memory"); walls+=("$wall")
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "median: $(median "${rates[@]}") items/s after submission, $(median "${walls[@]}") s in all, peak memory $(median "${memories[@]}") MB"
