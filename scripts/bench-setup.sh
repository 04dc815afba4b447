#!/usr/bin/env bash
# Installs what `npm run bench` measures against on a fresh Debian machine: the anchors
# (aria2c, curl, nginx, wrk) and the loopback swarm tools (mktorrent, opentracker), with apt
# when missing. PostgreSQL must be reachable at 127.0.0.1:5432 (the scale benchmarks use it).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in aria2c curl nginx wrk mktorrent opentracker; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=()
  for tool in "${need[@]}"; do
    case "$tool" in
      aria2c) pkgs+=(aria2) ;;
      *) pkgs+=("$tool") ;;
    esac
  done
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
[ -d node_modules ] || npm ci --no-audit --no-fund
