#!/usr/bin/env bash
# Install everything compose-kfp's tests, demo and benchmarks need on a fresh Debian machine.
# Idempotent: a second run installs nothing new. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker-registry skopeo umoci podman runc debootstrap buildah bubblewrap busybox-static hyperfine pigz curl make time)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# pip is quick when everything is already satisfied, and this keeps the editable
# install pointing at this checkout with every extra the tests need.
$PY -m pip install -q --disable-pip-version-check -e '.[test,bench]'
# Bytecode now, once: an editable install runs the sources, and where PYTHONDONTWRITEBYTECODE is set (CI images,
# this machine) Python would otherwise compile every module again on every command (~0.1 s of each start-up).
$PY -m compileall -q -j 0 compose_kfp
