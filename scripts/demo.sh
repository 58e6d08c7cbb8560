#!/usr/bin/env bash
# `make demo`: the operations guide's workflow, for real, on the dev stack (make dev-up ran before).
# Deploys process-baseline-v1 to `default`, runs an experiment of it against process-intelligent-v1
# with a load profile, follows it live and prints the measured analysis.
set -euo pipefail
cd "$(dirname "$0")/.."
phoenix=(.venv/bin/phoenix)
host="${PHOENIX_DEV_HOST_ID:-$(hostname)-dev}"

echo "==> agents"
"${phoenix[@]}" agents list

echo "==> deploy process-baseline-v1 to namespace default"
dep_json=$("${phoenix[@]}" --json deploy create --name demo --namespace default --template process-baseline-v1)
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

echo "==> experiment: process-baseline-v1 vs process-intelligent-v1, load profile realistic"
exp_json=$("${phoenix[@]}" --json experiment create --name demo-cost-opt \
	--baseline process-baseline-v1 --candidate process-intelligent-v1 --namespace default \
	--critical postgres otelcol-phoenix \
	--param-baseline collection_interval=5 --param-candidate collection_interval=5 --param-candidate k=12 \
	--warmup "${DEMO_WARMUP:-20s}" --duration "${DEMO_DURATION:-90s}" --sample-interval 5s \
	--load-profile realistic)
exp_id=$(printf '%s' "$exp_json" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "experiment $exp_id created; following it live (Ctrl-C leaves it running)"
"${phoenix[@]}" experiment watch "$exp_id"
echo
echo "Dashboard: http://127.0.0.1:8080/#/experiments/$exp_id   Stop the stack: make dev-down"
