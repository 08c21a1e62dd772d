#!/usr/bin/env bash
# Runs every Parley test on a fresh machine: vet, the race-enabled test
# suite against real SQLite, PostgreSQL, NATS and real WebSocket clients on
# loopback, the wire-contract suite once more against a three-node cluster,
# a short run of each fuzz target, and the browser tests. It installs what
# it needs first.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v go >/dev/null 2>&1; then
  echo "test.sh: Go 1.26 is required (https://go.dev/dl/)" >&2
  exit 1
fi

# apt_install PACKAGE... installs Debian packages, as root or with sudo.
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# The race detector needs cgo and a C compiler; the cluster test puts
# Debian's HAProxy in front of three nodes.
command -v gcc >/dev/null 2>&1 || apt_install gcc
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || apt_install haproxy
# Videos get their duration and poster frame from ffmpeg; the media tests
# cover both.
command -v ffmpeg >/dev/null 2>&1 || apt_install ffmpeg

# The store and cluster tests use the machine's PostgreSQL (127.0.0.1:5432,
# trust auth, user postgres; PARLEY_TEST_PG_URL overrides it) and start it
# if it is installed but stopped. NATS is embedded in the tests.
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && [ -z "${PARLEY_TEST_PG_URL:-}" ]; then
    echo "test.sh: PostgreSQL does not answer on 127.0.0.1:5432; start it (pg_ctlcluster 15 main start) or set PARLEY_TEST_PG_URL" >&2
    exit 1
  fi
fi

go mod download
echo "== go vet"
go vet ./...
echo "== SeaweedFS for the S3 media tests (built once per machine, then cached)"
go run ./internal/s3test/buildweed
echo "== go test -race"
CGO_ENABLED=1 go test -race -count=1 -timeout 20m ./...
echo "== the wire contract against a three-node cluster (PostgreSQL, NATS)"
PARLEY_TEST_CLUSTER=3 CGO_ENABLED=1 go test -race -count=1 -timeout 20m ./internal/conformance/ ./internal/gateway/
echo "== fuzz (short)"
go test ./wire -run '^$' -fuzz FuzzDecode -fuzztime "${FUZZTIME:-10s}"
go test ./internal/mediaproc -run '^$' -fuzz FuzzProcess -fuzztime "${FUZZTIME:-10s}"
echo "== browser tests (headless Chromium; screenshots in web/e2e/screenshots/)"
[ -x /usr/bin/chromium ] || apt_install chromium
if ! command -v npm >/dev/null 2>&1; then
  echo "test.sh: Node.js 20 or later with npm is required for the browser tests (https://nodejs.org/)" >&2
  exit 1
fi
(cd web/e2e && npm ci --no-audit --no-fund && npm test)
