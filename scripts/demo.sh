#!/usr/bin/env bash
# The whole job, end to end, on a fresh Debian machine:
#   1. the CNCF distribution registry on 127.0.0.1:${REGISTRY_PORT:-5000} (scripts/registry.sh),
#   2. a Debian+python3 base image built and pushed by compose-kfp (scripts/make-base-image.sh),
#   3. `compose-kfp plan` and `apply` on examples/iris (build, push, render),
#   4. `compose-kfp run --local`: every task runs inside the pushed image,
#   5. the model's accuracy, printed last.
# Rerunning is fast: the base is cached and nothing is pushed when nothing changed.
# `make deps` (run by `make demo`) installs the Debian and Python packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
export REGISTRY_PORT=${REGISTRY_PORT:-5000}
export COMPOSE_KFP_STATE=${COMPOSE_KFP_STATE:-$PWD/.demo}
EXAMPLE=examples/iris
HOSTPORT="localhost:$REGISTRY_PORT"
BASE_REF="$HOSTPORT/compose-kfp/debian-python:bookworm"
# The example's kfp.toml names localhost:5000; these follow REGISTRY_PORT (only for the example's commands).
EXAMPLE_ENV=(env COMPOSE_KFP_BASE="$BASE_REF" COMPOSE_KFP_REPOSITORY="$HOSTPORT/examples/iris")

CKFP=${PYTHON:-python3}
step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

step "registry on 127.0.0.1:$REGISTRY_PORT"
bash scripts/registry.sh start

step "base image $BASE_REF"
bash scripts/make-base-image.sh "$BASE_REF"

step "compose-kfp plan ($EXAMPLE)"
"${EXAMPLE_ENV[@]}" "$CKFP" -m compose_kfp -f "$EXAMPLE/kfp.toml" plan

step "compose-kfp apply ($EXAMPLE)"
"${EXAMPLE_ENV[@]}" "$CKFP" -m compose_kfp -f "$EXAMPLE/kfp.toml" apply --yes

step "compose-kfp run --local ($EXAMPLE)"
RUN_DIR="$COMPOSE_KFP_STATE/runs/iris"
rm -rf "$RUN_DIR"
"${EXAMPLE_ENV[@]}" "$CKFP" -m compose_kfp -f "$EXAMPLE/kfp.toml" run --local --run-dir "$RUN_DIR"

ACC_FILE="$RUN_DIR/evaluate/outputs/accuracy/data"
[ -f "$ACC_FILE" ] || { echo "the evaluate task wrote no accuracy output ($ACC_FILE)" >&2; exit 1; }
step "result"
printf 'model accuracy: %s\n' "$(cat "$ACC_FILE")"
