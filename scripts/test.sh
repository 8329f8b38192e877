#!/usr/bin/env bash
# The whole test suite, with the AWS emulator the AWS tests need (installed on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
export SQS_ACCESS_REQUIRE_MOTO=1
exec scripts/with-moto.sh cargo test "$@"
