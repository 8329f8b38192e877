#!/usr/bin/env bash
# Runs a command with an AWS API emulator (moto's server) on a free loopback port, then stops
# it. The emulator's URL is exported as SQS_ACCESS_TEST_MOTO_URL; the AWS tests use it.
#   scripts/with-moto.sh cargo test
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/loopback-aws.sh
. scripts/loopback-aws.sh

MOTO_VERSION="5.2.5"
VENV="${MOTO_VENV:-/var/tmp/sqs-access-operator-moto-${MOTO_VERSION}}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "== installing moto[server]==$MOTO_VERSION into $VENV" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
LOG="${TMPDIR:-/tmp}/moto-$PORT.log"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/moto-api/', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then
    echo "moto_server exited; its log:" >&2; cat "$LOG" >&2; exit 1
  fi
  sleep 0.1
done
echo "== moto $MOTO_VERSION on http://127.0.0.1:$PORT" >&2

export SQS_ACCESS_TEST_MOTO_URL="http://127.0.0.1:$PORT"
"$@"
