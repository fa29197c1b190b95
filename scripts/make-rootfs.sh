#!/usr/bin/env bash
# Build (once per machine) a Debian bookworm `minbase` root filesystem with python3,
# using debootstrap and the Debian mirror this machine's apt already uses.
# Usage: scripts/make-rootfs.sh [DEST]   (default: /var/cache/compose-kfp/rootfs/bookworm-python3)
# Prints DEST on stdout. A finished tree is marked by the file DEST.done (outside the tree); an
# unfinished one (interrupted run) is removed and rebuilt. Needs root (debootstrap).
set -euo pipefail

DEST=${1:-${COMPOSE_KFP_ROOTFS:-/var/cache/compose-kfp/rootfs/bookworm-python3}}
SUITE=bookworm
STAMP="$DEST.done"

if [ -f "$STAMP" ]; then
  echo "$DEST"
  exit 0
fi

mirror() {
  # First deb URI of the machine's apt sources (deb822 or one-line format), else deb.debian.org.
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

rm -rf "$DEST" "$DEST.tmp" "$STAMP"
mkdir -p "$(dirname "$DEST")"
MIRROR=$(mirror)
echo "debootstrap $SUITE (minbase + python3) from $MIRROR into $DEST" >&2
debootstrap --variant=minbase --include=python3,ca-certificates "$SUITE" "$DEST.tmp" "$MIRROR" >"$DEST.log" 2>&1 \
  || { echo "debootstrap failed; see $DEST.log" >&2; exit 1; }

# Prune what an image does not need: package caches and lists, docs, man pages,
# locales, and device nodes (container runtimes create /dev themselves).
( cd "$DEST.tmp"
  rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* \
         usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* \
         var/log/* var/cache/debconf/*-old tmp/* root/.bash_history
  find dev -mindepth 1 -delete
  find . -name '__pycache__' -type d -prune -exec rm -rf {} +
)
mv "$DEST.tmp" "$DEST"
touch "$STAMP"
echo "$DEST"
