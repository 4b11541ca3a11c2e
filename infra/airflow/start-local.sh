#!/usr/bin/env bash
# Start a local Airflow 3 for fairshelf on one machine: the API server (UI, REST API and
# the execution API the task processes call), the scheduler (LocalExecutor) and the DAG
# processor, with SQLite as metadata database. It stays in the foreground; Ctrl-C or
# SIGTERM stops every component it started, and if one component dies the others are
# stopped too, so nothing is left running half.
#
# Usage: infra/airflow/start-local.sh [--env-file FILE] [--port PORT]
#
#   --env-file FILE  settings to load (default: airflow.env beside this script). A
#                    variable already set in the environment wins over the file, so
#                    `AIRFLOW_HOME=/tmp/x infra/airflow/start-local.sh` needs no edited copy.
#   --port PORT      the API server's port (default 8080); the execution API URL the
#                    tasks use follows it unless AIRFLOW__CORE__EXECUTION_API_SERVER_URL
#                    is set in the environment.
#
# Run from the checkout (it uses .venv/bin/airflow when there is one). It migrates the
# database first, then starts the components with their logs in
# $AIRFLOW_HOME/logs/<component>.log, and prints "airflow ready on port PORT" once the
# API server answers its health check. tests/dags/test_airflow_scheduler.py starts
# Airflow with this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
env_file="$here/airflow.env"
port=8080
while [[ $# -gt 0 ]]; do
  case "$1" in
    --env-file) env_file="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "start-local.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -r "$env_file" ]] || { echo "start-local.sh: cannot read settings file $env_file" >&2; exit 2; }
[[ "$port" =~ ^[0-9]+$ ]] || { echo "start-local.sh: --port needs a number, got $port" >&2; exit 2; }

# Settings from the file, unless the environment already has them. The execution API URL
# is derived from the port first, so the file's default (port 8080) does not override it.
: "${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:=http://localhost:${port}/execution/}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL
while IFS= read -r line || [[ -n "$line" ]]; do
  [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
  name="${line%%=*}"; name="${name//[[:space:]]/}"
  value="${line#*=}"
  [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "start-local.sh: bad line in $env_file: $line" >&2; exit 2; }
  [[ -v "$name" ]] || export "$name=$value"
done < "$env_file"
export AIRFLOW__API__PORT="$port"

# Every component must sign and check task tokens with the same secret. Without one from
# a secret store, this start makes one for its own components (they all inherit it);
# tasks then run only under this start, which is what a local Airflow needs.
if [[ -z "${AIRFLOW__API_AUTH__JWT_SECRET:-}" ]]; then
  AIRFLOW__API_AUTH__JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
  export AIRFLOW__API_AUTH__JWT_SECRET
  echo "start-local.sh: no AIRFLOW__API_AUTH__JWT_SECRET set; using a fresh one for this start"
fi

airflow="$repo/.venv/bin/airflow"
[[ -x "$airflow" ]] || airflow="$(command -v airflow)" || { echo "start-local.sh: no airflow (run make setup)" >&2; exit 2; }
python="$(dirname "$airflow")/python"
[[ -x "$python" ]] || python=python3

mkdir -p "$AIRFLOW_HOME/logs"
echo "start-local.sh: AIRFLOW_HOME=$AIRFLOW_HOME, dags from $AIRFLOW__CORE__DAGS_FOLDER"
"$airflow" db migrate > "$AIRFLOW_HOME/logs/db-migrate.log" 2>&1 \
  || { echo "start-local.sh: airflow db migrate failed; see $AIRFLOW_HOME/logs/db-migrate.log" >&2; exit 1; }

pids=()
stop_all() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Give them time to stop their own children (task processes), then insist.
  for _ in $(seq 1 30); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && return 0
    sleep 1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 143' INT TERM
trap stop_all EXIT

start() {  # start <component> <args...>: one component, logging to logs/<component>.log
  local component="$1"; shift
  "$airflow" "$@" > "$AIRFLOW_HOME/logs/$component.log" 2>&1 &
  pids+=("$!")
  echo "start-local.sh: $component started (pid $!)"
}
start api-server api-server --port "$port"
start scheduler scheduler
start dag-processor dag-processor

# Ready when the API server's health endpoint answers.
health="http://localhost:${port}/api/v2/monitor/health"
ready=0
for _ in $(seq 1 180); do
  if "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$health" 2>/dev/null; then
    ready=1
    echo "airflow ready on port $port"
    break
  fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "start-local.sh: a component exited early; see $AIRFLOW_HOME/logs/" >&2; exit 1; }
  done
  sleep 1
done
[[ $ready == 1 ]] || { echo "start-local.sh: the API server did not answer $health in 180 s; see $AIRFLOW_HOME/logs/" >&2; exit 1; }

# Stay in the foreground until a component exits (then stop the rest) or a signal comes.
set +e
wait -n "${pids[@]}"
status=$?
echo "start-local.sh: a component exited (status $status); stopping the others; see $AIRFLOW_HOME/logs/" >&2
exit "$status"
