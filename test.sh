#!/usr/bin/env bash
# Runs every Parley test on a fresh machine: vet, the race-enabled test
# suite against real SQLite and real WebSocket clients on loopback, and a
# short run of each fuzz target. It installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v go >/dev/null 2>&1; then
  echo "test.sh: Go 1.26 is required (https://go.dev/dl/)" >&2
  exit 1
fi
# The race detector needs cgo and a C compiler.
if ! command -v gcc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq gcc >/dev/null; else sudo apt-get update -qq && sudo apt-get install -y -qq gcc >/dev/null; fi
fi

go mod download
echo "== go vet"
go vet ./...
echo "== go test -race"
CGO_ENABLED=1 go test -race -count=1 -timeout 20m ./...
echo "== fuzz (short)"
go test ./wire -run '^$' -fuzz FuzzDecode -fuzztime "${FUZZTIME:-10s}"
echo "== browser tests (headless Chromium; screenshots in web/e2e/screenshots/)"
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "test.sh: Node.js 20 or later with npm is required for the browser tests (https://nodejs.org/)" >&2
  exit 1
fi
(cd web/e2e && npm ci --no-audit --no-fund && npm test)
