#!/usr/bin/env bash
# Installs what `npm run bench` measures against on a fresh Debian machine: the anchors
# (aria2c, curl, nginx, wrk) and the loopback swarm tools (mktorrent, opentracker), with apt
# when missing. PostgreSQL must be reachable at 127.0.0.1:5432 (the scale benchmarks use it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh aria2c curl nginx wrk mktorrent opentracker
[ -d node_modules ] || npm ci --no-audit --no-fund
