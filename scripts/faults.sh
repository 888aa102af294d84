#!/usr/bin/env bash
# The full fault suite: 8 agents commit through slots and claim tasks while
# the hub is killed with SIGKILL 20 times at random moments (and restarted),
# its coordination server is killed alone, or while another user (nobody,
# where the suite runs as root) races for its port, the hub is frozen past
# the stop grace, and the disk under the state directory fills up (where the
# machine lets a test mount a small tmpfs).
#
# Usage: scripts/faults.sh [KILLS]     (default 20; CI runs 5 in scripts/test.sh)
#
# Prints one line per scenario on stderr (acked_claims too):
#   faults: kills=<n> acked_commits=<a> lost=0 double_claims=0 orphans=0
#     acked_claims=<c> log_mismatches=0 scenario=<name>
# The port race adds captured=0 (answers the other user received).
# Each run prints its seed; BONES_FAULT_SEED=<seed> replays its kill timings.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
esac
KILLS="${1:-20}"
if ! [[ "$KILLS" =~ ^[0-9]+$ ]]; then
    echo "faults: KILLS must be a number, not '$KILLS'" >&2
    exit 2
fi

. scripts/setup.sh
echo "faults: $KILLS hub kills (nats-server: $BONES_NATS_SERVER)" >&2
BONES_FAULT_KILLS="$KILLS" cargo test --locked --test faults -- --nocapture
