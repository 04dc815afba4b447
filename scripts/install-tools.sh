#!/usr/bin/env bash
# Installs the Debian packages behind the named commands, when any is missing:
#   bash scripts/install-tools.sh aria2c curl nginx ...
set -euo pipefail

need=()
for tool in "$@"; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
[ ${#need[@]} -eq 0 ] && exit 0
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
