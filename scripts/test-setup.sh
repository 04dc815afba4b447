#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the third-party tools the tests
# drive for real (aria2c, unzip, curl) and the npm dependencies (Node 24 comes from npm).
# PostgreSQL must be reachable at 127.0.0.1:5432 with trust auth (FERRY_TEST_PG_URL overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in aria2c unzip curl mktorrent opentracker qbittorrent-nox chromium; do
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

npm ci --no-audit --no-fund
