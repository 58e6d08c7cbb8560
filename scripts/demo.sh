#!/usr/bin/env bash
# `make demo`: the operations guide's workflow, for real, on the dev stack (make dev-up ran before).
# Ships to the dev stack's local Prometheus (destination demo-prometheus, remote write), deploys
# process-baseline-v1 to `default`, runs an experiment of it against process-intelligent-v1 with a load
# profile, follows it live, promotes the candidate and prints the URL of Prometheus' graph of its series.
set -euo pipefail
cd "$(dirname "$0")/.."
phoenix=(.venv/bin/phoenix)
host="${PHOENIX_DEV_HOST_ID:-$(hostname)-dev}"

echo "==> agents"
"${phoenix[@]}" agents list

prom="http://127.0.0.1:${PHOENIX_DEV_PROMETHEUS_PORT:-9090}"
ship=(--no-destination)
if curl -fsS "$prom/-/ready" >/dev/null 2>&1; then
	echo "==> destination demo-prometheus: remote write to the local Prometheus at $prom"
	if ! "${phoenix[@]}" destinations show demo-prometheus >/dev/null 2>&1; then
		"${phoenix[@]}" destinations create demo-prometheus --type prometheus_remote_write \
			--endpoint "$prom/api/v1/write"
	fi
	ship=(--destination demo-prometheus)
else
	echo "==> no local Prometheus at $prom (make system-deps, then make dev-up): measuring locally only"
	prom=""
fi

echo "==> deploy process-baseline-v1 to namespace default"
dep_json=$("${phoenix[@]}" --json deploy create --name demo --namespace default --template process-baseline-v1 "${ship[@]}")
dep_hash=$(printf '%s' "$dep_json" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["config_hash"])')
printf 'waiting for %s to run it' "$host"
for _ in $(seq 1 120); do
	running=$("${phoenix[@]}" --json agents show "$host" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin).get("config_hash") or "")')
	if [[ "$running" == "$dep_hash" ]]; then
		echo " - running"
		break
	fi
	printf '.'
	sleep 1
done
[[ "$running" == "$dep_hash" ]] || { echo; echo "demo: the agent did not apply the deployment; see .state/dev/logs/agent.log" >&2; exit 1; }

profile="${DEMO_LOAD_PROFILE:-realistic}"
echo "==> experiment: process-baseline-v1 vs process-intelligent-v1, load profile $profile"
exp_json=$("${phoenix[@]}" --json experiment create --name demo-cost-opt \
	--baseline process-baseline-v1 --candidate process-intelligent-v1 --namespace default \
	--critical postgres otelcol-phoenix \
	--param-baseline collection_interval=5 --param-candidate collection_interval=5 \
	--warmup "${DEMO_WARMUP:-20s}" --duration "${DEMO_DURATION:-90s}" --sample-interval 5s \
	--billing-window "${DEMO_BILLING_WINDOW:-1m}" --load-profile "$profile")
exp_id=$(printf '%s' "$exp_json" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "experiment $exp_id created; following it live (Ctrl-C leaves it running)"
"${phoenix[@]}" experiment watch "$exp_id"
echo

verdict=$("${phoenix[@]}" --json experiment analysis "$exp_id" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin).get("verdict") or "none")')
echo "==> promote the candidate (verdict: $verdict$([[ "$verdict" == promote ]] || echo '; promoted anyway, as a demo, with --force'))"
force=()
[[ "$verdict" == promote ]] || force=(--force)
promoted=$("${phoenix[@]}" --json experiment promote "$exp_id" "${force[@]}")
printf '%s\n' "$promoted" | .venv/bin/python -c 'import json,sys; d=json.load(sys.stdin); print("\n".join("promoted: deployment " + x["id"] for x in d["deployments"]))'
if [[ -n "$prom" ]]; then
	expr='count by (phoenix_pipeline) (process_cpu_time_seconds_total)'
	query=$(.venv/bin/python -c 'import sys, urllib.parse; print(urllib.parse.urlencode({"g0.expr": sys.argv[1], "g0.tab": "0", "g0.range_input": "15m"}))' "$expr")
	echo "Series the promoted pipeline ships, next to the baseline's before it: $prom/graph?$query"
fi
echo "Dashboard: http://127.0.0.1:8080/#/experiments/$exp_id   Stop the stack: make dev-down"
