#!/usr/bin/env bash
# Runs everything CI runs: set-up, formatting, lints, then the whole test suite
# against a real nats-server and real git repositories in temp dirs.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/setup.sh

echo "test: cargo fmt --check" >&2
cargo fmt --all -- --check
echo "test: cargo clippy" >&2
cargo clippy --all-targets --locked -- -D warnings
echo "test: cargo test (nats-server: $BONES_NATS_SERVER)" >&2
cargo test --all-targets --locked
echo "test: ok" >&2
