#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the third-party tools the tests
# drive for real (aria2c, qbittorrent-nox, mktorrent, opentracker, chromium, unzip, curl) and
# the npm dependencies (Node 24 comes from npm).
# PostgreSQL must be reachable at 127.0.0.1:5432 with trust auth (FERRY_TEST_PG_URL overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh aria2c unzip curl mktorrent opentracker qbittorrent-nox chromium
npm ci --no-audit --no-fund
