#!/usr/bin/env bash
# Start (or stop) the CNCF distribution registry on loopback for the demo.
# Usage: scripts/registry.sh start|stop|status   (env: REGISTRY_PORT, default 5000;
# COMPOSE_KFP_STATE, default <repo>/.demo). Data persists in $COMPOSE_KFP_STATE/registry,
# so a rerun of the demo finds its images there. Listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${REGISTRY_PORT:-5000}
STATE=${COMPOSE_KFP_STATE:-$PWD/.demo}
DIR="$STATE/registry"
PIDFILE="$DIR/registry.pid"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
answering() { curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v2/" 2>/dev/null; }

case "${1:-start}" in
  start)
    if running && answering; then echo "registry already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))" >&2; exit 0; fi
    if answering; then
      echo "something else already answers on 127.0.0.1:$PORT; using it as the registry" >&2; exit 0
    fi
    mkdir -p "$DIR/storage"
    cat > "$DIR/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $DIR/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
YAML
    nohup docker-registry serve "$DIR/config.yml" >"$DIR/registry.log" 2>&1 &
    echo $! > "$PIDFILE"
    for _ in $(seq 1 50); do answering && break; sleep 0.1; done
    answering || { echo "the registry did not start; see $DIR/registry.log" >&2; exit 1; }
    echo "registry running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), data in $DIR/storage)" >&2
    ;;
  stop)
    if running; then kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; echo "registry stopped" >&2; else echo "registry not running" >&2; fi
    ;;
  status)
    if running && answering; then echo "running on 127.0.0.1:$PORT"; else echo "not running"; exit 1; fi
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
