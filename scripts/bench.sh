#!/usr/bin/env bash
# Benchmarks bones against the tools it stands beside.
#
#   scripts/bench.sh start   bones hub start --detach vs a bare nats-server -js coming up
#   scripts/bench.sh stop    bones hub stop vs SIGTERM to a bare nats-server until it exits
#   scripts/bench.sh logs    bones logs --hub --json --level warn vs jq, and peak RSS,
#                            on a 1,000,000- and a 4,000,000-line hub.log
#   scripts/bench.sh commits 8 slots landing 25 commits each through bones vs a serial
#                            git commit && git push loop to a local bare repository
#   scripts/bench.sh claims  task claims through the bones library vs a bare async-nats KV
#                            compare-and-swap loop; one `bones tasks claim --next` vs
#                            `git rev-parse HEAD`
#   scripts/bench.sh feed    knowledge-feed entries shared and followed through bones vs a
#                            bare async-nats JetStream publish and consume loop
#   scripts/bench.sh wait    a waiting `bones tasks claim --next --wait`: time from its
#                            blocker closing to the claim returning
#   scripts/bench.sh reap    a slot whose lease expires with nothing else happening:
#                            time from its expiry to its reap entry in hub.log
#   scripts/bench.sh bigrepo the round trip on a >= 20,000-file repository: first
#                            `bones hub start --detach` vs `git clone --no-local`;
#                            `bones swarm join` vs `git worktree add`; 4 concurrent joins
#                            vs 4 concurrent worktree adds; first `bones apply` vs
#                            `git fetch` of the same commits into a fresh clone
#   scripts/bench.sh ui      the live view with one page open, 64 slots, 5,000 tasks and
#                            10 landings a second: time from a landing's acknowledgement
#                            to its event on the page's stream, and the hub's CPU
#   scripts/bench.sh all     all of the above
#
# Each measure prints one machine-readable line on stdout (medians in ms;
# logs: ratio = jq time / bones time, rss_mb = peak RSS of bones):
#   bench start ratio=<bones/anchor> bones_ms=<ms> anchor_ms=<ms> runs=<n>
#     floor_ratio=<(anchor + exec)/anchor> exec_ms=<ms: two runs of `bones --version`>
#   bench stop ratio=<bones/anchor> bones_ms=<ms> anchor_ms=<ms> runs=<n>
#     floor_ratio=<(anchor + exec)/anchor> exec_ms=<ms: one run of `bones --version`>
#   bench logs ratio=<jq/bones> rss_mb=<MiB> lines=<n>
#   bench commits ratio=<bones/git> bones_per_s=<n> git_per_s=<n> commits=<n>
#   bench claims ratio=<bones/anchor> cli_ratio=<cli/git> lib_claims_per_s=<n>
#     anchor_claims_per_s=<n> cli_ms=<ms> git_ms=<ms> tasks=<n> claimers=<n>
#   bench feed ratio=<bones/anchor> protocol_ratio=<bones/same-protocol anchor>
#     ids_ratio=<anchor with message ids/anchor> bones_per_s=<n> anchor_per_s=<n>
#     ids_per_s=<n> protocol_per_s=<n> entries=<n> rounds=<n>
#   bench wait ms=<median ms> max_ms=<ms> runs=<n>
#   bench reap latency_ms=<median ms> max_ms=<ms> runs=<n>
#   bench bigrepo seed_ratio=<bones/git> join_ratio=<bones/git> join4_ratio=<bones/git>
#     apply_ratio=<bones/git> seed_ms=<ms> clone_ms=<ms> ... files=<n> runs=<n>
#     (ratios: the median of each run's ratio; times: medians of each side)
#   bench ui latency_ms=<median ms> cpu_pct=<% of a core> base_pct=<same, no page> landings=<n>
# Progress goes to stderr. Targets: start ratio <= 2.0, stop ratio <= 1.5,
# logs ratio >= 10 with rss_mb < 32 at both sizes, commits ratio >= 1.0,
# claims ratio >= 0.8 and cli_ratio <= 4, feed protocol_ratio >= 0.8 and
# ratio >= 0.5, wait ms <= 100, reap latency_ms <= 1000, every bigrepo ratio <= 1.5,
# ui latency_ms <= 100 and cpu_pct <= 5.
#
# Environment: BENCH_RUNS (start/stop runs of each side, default 7),
# BENCH_LOG_RUNS (timed runs of each side for logs, default 3),
# BENCH_LOG_SIZES (default "1000000 4000000"), BENCH_COMMITS_PER_SLOT (default
# 25), BENCH_CLAIM_TASKS (tasks per claims round, default 300),
# BENCH_CLAIM_ROUNDS (default 3), BENCH_FEED_ENTRIES (entries per feed round,
# default 20000), BENCH_FEED_ROUNDS (default 3), BENCH_WAIT_RUNS (default 21),
# BENCH_REAP_RUNS (default 9),
# BENCH_BIGREPO_FILES (tracked
# files of the big repository, default 21000; at least 20000), BENCH_BIGREPO_RUNS
# (default 3), BENCH_CACHE (where the generated repository is kept between runs,
# default ${XDG_CACHE_HOME:-~/.cache}/bones-bench).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

case "${1:-}" in
-h | --help | help)
    usage
    exit 0
    ;;
start | stop | logs | commits | claims | feed | wait | reap | bigrepo | ui | all) mode="$1" ;;
*)
    usage >&2
    exit 2
    ;;
esac
if (($# > 1)); then
    echo "bench: unexpected argument: $2" >&2
    exit 2
fi

RUNS="${BENCH_RUNS:-7}"
LOG_RUNS="${BENCH_LOG_RUNS:-3}"
LOG_SIZES="${BENCH_LOG_SIZES:-1000000 4000000}"

. scripts/setup.sh
# settings that would move the state directory or change what is logged
unset BONES_DIR BONES_HUB_LOG_LEVEL BONES_LOG_MAX_SIZE BONES_LOG_MAX_FILES

ROOT="$PWD"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/bones-bench.XXXXXX")"
BONES="$ROOT/target/release/bones"
WORKSPACES=() # every workspace made, for the trap to stop its hub
BG_PID=""     # the long-running child currently waited on

# True when pid $1 is still one of ours: its command line or its working
# directory names $2 (a path under this run's temp dir), so a pid file left
# behind never gets a reused pid killed.
ours() {
    [ -n "$1" ] && [ -d "/proc/$1" ] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2" ||
        [ "$(readlink "/proc/$1/cwd" 2>/dev/null)" = "$2" ]
}

cleanup() {
    local rc=$? ws pid f
    trap - EXIT INT TERM
    if [ -n "$BG_PID" ]; then
        pkill -TERM -P "$BG_PID" 2>/dev/null || true
        kill "$BG_PID" 2>/dev/null || true
        wait "$BG_PID" 2>/dev/null || true
    fi
    # a bare nats-server the start benchmark may have left running
    pid="$(cat "$TMP/scratch/anchor.pid" 2>/dev/null || true)"
    if ours "$pid" "$TMP"; then kill -KILL "$pid" 2>/dev/null || true; fi
    for ws in "${WORKSPACES[@]}"; do
        [ -d "$ws" ] || continue # a benchmark removed it once done
        (cd "$ws" && "$BONES" hub stop --force >/dev/null 2>&1) || true
        # belt and braces: a hub or server that survived the stop
        for f in hub.pid nats.pid; do
            pid="$(cat "$ws/.bones/$f" 2>/dev/null || true)"
            if ours "$pid" "$ws"; then kill -KILL "$pid" 2>/dev/null || true; fi
        done
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background and waits for it, so that the trap can
# stop it on INT/TERM (bash runs traps only between foreground commands).
run_bg() {
    "$@" &
    BG_PID=$!
    local rc=0
    wait "$BG_PID" || rc=$?
    BG_PID=""
    return "$rc"
}

log() { echo "bench: $*" >&2; }

build() {
    log "cargo build --release"
    run_bg cargo build --release --quiet
    if [ "$mode" = start ] || [ "$mode" = stop ] || [ "$mode" = all ]; then
        run_bg cargo build --release --quiet --example bench_start
    fi
    if [ "$mode" = claims ] || [ "$mode" = all ]; then
        run_bg cargo build --release --quiet --example bench_claims
    fi
    if [ "$mode" = feed ] || [ "$mode" = all ]; then
        run_bg cargo build --release --quiet --example bench_feed
    fi
    if [ "$mode" = wait ] || [ "$mode" = all ]; then
        run_bg cargo build --release --quiet --example bench_wait
    fi
    if [ "$mode" = reap ] || [ "$mode" = all ]; then
        run_bg cargo build --release --quiet --example bench_reap
    fi
    if [ "$mode" = ui ] || [ "$mode" = all ]; then
        run_bg cargo build --release --quiet --example bench_ui
    fi
}

# Makes $TMP/NAME a committed git repository with one file and runs
# `bones up` in it.
new_workspace() {
    local ws="$TMP/$1"
    mkdir -p "$ws"
    WORKSPACES+=("$ws")
    (
        cd "$ws"
        git init -q -b main
        echo "# bench" >README.md
        git add README.md
        git -c user.name=bench -c user.email=bench@example.com commit -qm init
        "$BONES" up 2>/dev/null
    )
}

bench_start_stop() {
    local measure="$1" ws="$TMP/ws-start"
    new_workspace ws-start
    mkdir -p "$TMP/scratch"
    # the first start seeds hub.git; the benchmark then measures restarts
    log "seeding the hub repository (first start/stop)"
    (cd "$ws" && "$BONES" hub start --detach 2>/dev/null && "$BONES" hub stop 2>/dev/null)
    log "measuring $measure: $RUNS runs each of bones and a bare nats-server, alternating"
    run_bg target/release/examples/bench_start \
        --bones "$BONES" --nats "$BONES_NATS_SERVER" \
        --workspace "$ws" --scratch "$TMP/scratch" \
        --runs "$RUNS" --measure "$measure"
}

# Writes N realistic hub.log lines to stdout: mostly INFO rpc calls, ~5%
# WARN, ~1% ERROR, some hooks and lifecycle entries, 20 ms apart.
gen_log() {
    awk -v n="$1" 'BEGIN {
        srand(42)
        split("tasks.claim tasks.claim tasks.update tasks.list tasks.close swarm.open swarm.commit swarm.renew", rpcs, " ")
        split("pre-commit post-checkout session-start session-end", hooks, " ")
        split("hub: starting|hub: ready|hub: seeded trunk 3f2a9c1 from 214 tracked files|hub: stopping|hub: stopped", life, "|")
        split("compare-and-swap lost: revision 41 != 40|lease expired for slot-3|nats: timeout|task not found", errs, "|")
        base = 36000000   # 10:00:00.000 in ms
        for (i = 0; i < n; i++) {
            t = base + i * 20
            day = 20 + int(t / 86400000); t = t % 86400000
            ts = sprintf("2026-11-%02dT%02d:%02d:%02d.%03dZ", day, int(t / 3600000), int(t / 60000) % 60, int(t / 1000) % 60, t % 1000)
            r = rand()
            agent = "agent-" int(rand() * 12)
            task = "t-" int(rand() * 5000)
            if (r < 0.003) {
                printf "{\"ts\":\"%s\",\"level\":\"INFO\",\"event\":\"lifecycle\",\"msg\":\"%s\"}\n", ts, life[1 + int(rand() * 5)]
            } else if (r < 0.013) {
                printf "{\"ts\":\"%s\",\"level\":\"ERROR\",\"event\":\"rpc\",\"msg\":\"tasks.claim failed\",\"rpc\":\"tasks.claim\",\"agent\":\"%s\",\"task\":\"%s\",\"took_ms\":%d,\"err\":\"%s\"}\n", ts, agent, task, int(rand() * 40), errs[1 + int(rand() * 4)]
            } else if (r < 0.063) {
                printf "{\"ts\":\"%s\",\"level\":\"WARN\",\"event\":\"rpc\",\"msg\":\"slow call\",\"rpc\":\"%s\",\"agent\":\"%s\",\"task\":\"%s\",\"took_ms\":%d}\n", ts, rpcs[1 + int(rand() * 8)], agent, task, 500 + int(rand() * 3000)
            } else if (r < 0.14) {
                printf "{\"ts\":\"%s\",\"level\":\"INFO\",\"event\":\"hook\",\"msg\":\"hook ran\",\"hook\":\"%s\",\"agent\":\"%s\",\"slot\":\"slot-%d\",\"session\":\"s-%06d\",\"took_ms\":%d}\n", ts, hooks[1 + int(rand() * 4)], agent, int(rand() * 8), int(rand() * 999999), int(rand() * 200)
            } else {
                rpc = rpcs[1 + int(rand() * 8)]
                if (rpc == "tasks.list")
                    printf "{\"ts\":\"%s\",\"level\":\"INFO\",\"event\":\"rpc\",\"msg\":\"%s\",\"rpc\":\"%s\",\"agent\":\"%s\",\"took_ms\":%d,\"result_count\":%d}\n", ts, rpc, rpc, agent, int(rand() * 60), int(rand() * 300)
                else
                    printf "{\"ts\":\"%s\",\"level\":\"INFO\",\"event\":\"rpc\",\"msg\":\"%s\",\"rpc\":\"%s\",\"agent\":\"%s\",\"task\":\"%s\",\"took_ms\":%d}\n", ts, rpc, rpc, agent, task, int(rand() * 60)
            }
        }
    }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Peak RSS in KiB of `bones ARGS` (run in the current directory, output
# discarded), written to $TMP/rss.
bones_rss() {
    run_bg /usr/bin/time -f %M -o "$TMP/rss" "$BONES" "$@" >/dev/null
}

# Appends T1 - T0 (seconds) to FILE.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f\n", b - a }' >>"$3"; }

bench_logs_size() {
    local lines="$1" ws="$TMP/ws-logs"
    local log_file="$ws/.bones/hub.log" i t0 t1 rss peak=0 want got
    cd "$ws" # bones finds the workspace from the current directory
    log "generating a $lines-line hub.log"
    run_bg gen_log "$lines" >"$log_file"
    log "hub.log: $(du -h "$log_file" | cut -f1), warming the page cache"
    cat "$log_file" >/dev/null

    want="$(grep -c -e '"level":"WARN"' -e '"level":"ERROR"' "$log_file")"
    got="$("$BONES" logs --hub --json --level warn | wc -l)"
    if [ "$got" != "$want" ]; then
        log "bones printed $got WARN/ERROR lines, the file holds $want"
        return 1
    fi

    : >"$TMP/bones.times"
    : >"$TMP/jq.times"
    for ((i = 1; i <= LOG_RUNS; i++)); do
        t0="$EPOCHREALTIME"
        bones_rss logs --hub --json --level warn
        t1="$EPOCHREALTIME"
        elapsed "$t0" "$t1" "$TMP/bones.times"
        rss="$(cat "$TMP/rss")"
        if ((rss > peak)); then peak="$rss"; fi
        t0="$EPOCHREALTIME"
        run_bg jq -c 'select(.level=="WARN" or .level=="ERROR")' "$log_file" >/dev/null
        t1="$EPOCHREALTIME"
        elapsed "$t0" "$t1" "$TMP/jq.times"
        log "run $i/$LOG_RUNS: bones $(tail -n1 "$TMP/bones.times")s (rss ${rss} KiB), jq $(tail -n1 "$TMP/jq.times")s"
    done
    bones_rss logs --hub --last 100
    rss="$(cat "$TMP/rss")"
    log "--last 100: rss ${rss} KiB"
    if ((rss > peak)); then peak="$rss"; fi

    local bones_s jq_s
    bones_s="$(median <"$TMP/bones.times")"
    jq_s="$(median <"$TMP/jq.times")"
    log "median: bones ${bones_s}s, jq ${jq_s}s"
    awk -v b="$bones_s" -v j="$jq_s" -v m="$peak" -v n="$lines" \
        'BEGIN { printf "bench logs ratio=%.2f rss_mb=%.1f lines=%d\n", j / b, m / 1024, n }'
    rm -f "$log_file"
    cd "$ROOT"
}

bench_logs() {
    if ! [ -x /usr/bin/time ]; then
        log "installing GNU time with apt-get"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >&2
    fi
    # `bones logs --hub` never starts a hub: the workspace needs no server
    new_workspace ws-logs
    local lines
    for lines in $LOG_SIZES; do
        bench_logs_size "$lines"
    done
}

# Commits landed per second: 8 slots committing at once through bones
# (`bones swarm commit`, one process per commit, as agents run it) against a
# serial loop of `git commit && git push` to a local bare repository making
# the same changes.
bench_commits() {
    local ws="$TMP/ws-commits" slots=8 per="${BENCH_COMMITS_PER_SLOT:-25}" s n t0 t1
    new_workspace ws-commits
    (cd "$ws" && "$BONES" hub start --detach 2>/dev/null)
    for ((s = 0; s < slots; s++)); do
        (cd "$ws" && "$BONES" swarm join --slot "s$s" --agent "bench-$s" >/dev/null 2>&1)
    done
    log "bones: $slots slots x $per commits, concurrently"
    t0="$EPOCHREALTIME"
    for ((s = 0; s < slots; s++)); do
        (
            wt="$ws/.bones/swarm/s$s/wt"
            mkdir -p "$wt/s$s"
            for ((n = 0; n < per; n++)); do
                echo "s$s $n" >"$wt/s$s/f$n.txt"
                (cd "$wt" && "$BONES" swarm commit -m "s$s commit $n" >/dev/null 2>&1) ||
                    { echo "bench: slot s$s commit $n failed" >&2; exit 1; }
            done
        ) &
    done
    wait_all
    t1="$EPOCHREALTIME"
    local landed
    landed="$(git --git-dir "$ws/.bones/hub.git" rev-list --count trunk)"
    if [ "$landed" -ne $((slots * per + 1)) ]; then
        log "trunk holds $landed commits, expected $((slots * per + 1))"
        return 1
    fi
    local bones_s
    bones_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')"
    (cd "$ws" && "$BONES" hub stop --force >/dev/null 2>&1)

    log "anchor: the same $((slots * per)) changes with git commit && git push, serially"
    local bare="$TMP/anchor.git" clone="$TMP/anchor-clone"
    git init -q --bare -b main "$bare"
    git clone -q "$bare" "$clone" 2>/dev/null
    (
        cd "$clone"
        git config user.name bench && git config user.email bench@example.com
        echo "# bench" >README.md && git add README.md && git commit -qm init && git push -q origin HEAD:main
    )
    t0="$EPOCHREALTIME"
    (
        cd "$clone"
        for ((n = 0; n < per; n++)); do
            for ((s = 0; s < slots; s++)); do
                mkdir -p "s$s"
                echo "s$s $n" >"s$s/f$n.txt"
                git add -A && git commit -qm "s$s commit $n" && git push -q origin HEAD:main
            done
        done
    )
    t1="$EPOCHREALTIME"
    local git_s
    git_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')"
    awk -v b="$bones_s" -v g="$git_s" -v c="$((slots * per))" \
        'BEGIN { printf "bench commits ratio=%.2f bones_per_s=%.1f git_per_s=%.1f commits=%d\n", (c / b) / (c / g), c / b, c / g, c }'
}

# Waits for every background job, failing if any failed.
wait_all() {
    local rc=0 pid
    for pid in $(jobs -p); do
        wait "$pid" || rc=1
    done
    return "$rc"
}

# Task claims: the bones library against a bare async-nats KV
# compare-and-swap loop, and one `bones tasks claim --next` process against
# `git rev-parse HEAD` (examples/bench_claims.rs).
bench_claims() {
    local ws="$TMP/ws-claims"
    new_workspace ws-claims
    (cd "$ws" && "$BONES" hub start --detach 2>/dev/null)
    log "claims: 8 claimers through the library vs a bare KV CAS loop; CLI claim vs git rev-parse"
    run_bg target/release/examples/bench_claims "$ws" "$BONES" "${BENCH_CLAIM_TASKS:-300}" 8 "${BENCH_CLAIM_ROUNDS:-3}"
    (cd "$ws" && "$BONES" hub stop --force >/dev/null 2>&1)
}

# Knowledge-feed entries per second: shared with the library and received
# by a follower, against a bare JetStream publish and consume loop with the
# same pipelining (examples/bench_feed.rs).
bench_feed() {
    local ws="$TMP/ws-feed"
    new_workspace ws-feed
    (cd "$ws" && "$BONES" hub start --detach 2>/dev/null)
    log "feed: ${BENCH_FEED_ENTRIES:-20000} entries shared and followed through bones vs bare JetStream"
    run_bg target/release/examples/bench_feed "$ws" "${BENCH_FEED_ENTRIES:-20000}" "${BENCH_FEED_ROUNDS:-3}"
    (cd "$ws" && "$BONES" hub stop --force >/dev/null 2>&1)
}

# A claim waiting for work: from its blocker closing to the claim
# returning (examples/bench_wait.rs).
bench_wait() {
    local ws="$TMP/ws-wait"
    new_workspace ws-wait
    (cd "$ws" && "$BONES" hub start --detach 2>/dev/null)
    log "wait: a waiting claim --next --wait, from its blocker closing to the claim returning"
    run_bg target/release/examples/bench_wait "$ws" "$BONES" "${BENCH_WAIT_RUNS:-21}"
    (cd "$ws" && "$BONES" hub stop --force >/dev/null 2>&1)
}

# A lease expiring with nothing else happening: from its expiry to its
# slot's reap entry in hub.log (examples/bench_reap.rs).
bench_reap() {
    log "reap: a lease expiring untouched, from its expiry to its slot's reap"
    with_hub ws-reap target/release/examples/bench_reap "${BENCH_REAP_RUNS:-9}"
}

# Runs example $2 with a fresh workspace $1 (its hub running) as its first
# argument and the rest of the arguments after it, then stops the hub.
with_hub() {
    local ws="$TMP/$1" example="$2"
    shift 2
    new_workspace "$(basename "$ws")"
    (cd "$ws" && "$BONES" hub start --detach 2>/dev/null)
    local rc=0
    run_bg "$example" "$ws" "$@" || rc=$?
    (cd "$ws" && "$BONES" hub stop --force >/dev/null 2>&1)
    return "$rc"
}

# The live view with one page open: from a landing's acknowledgement to
# its event on the stream, and the hub's CPU at 10 landings a second with
# 64 slots and 5,000 tasks (examples/bench_ui.rs).
bench_ui() {
    log "ui: one page open, 64 slots, 5,000 tasks, 10 landings a second"
    with_hub ws-ui target/release/examples/bench_ui "${BENCH_UI_SECONDS:-10}"
}

# Prints the path of a generated repository of $1 tracked files (about
# 2 KiB of source text each, in 2,000 directories, three commits, packed),
# made once under $BENCH_CACHE and reused by later runs.
bigrepo_cache() {
    local files="$1" cache="${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bones-bench}"
    local repo="$cache/bigrepo-$files"
    if [ -f "$repo/.bench-complete" ]; then
        echo "$repo"
        return
    fi
    log "generating a $files-file repository in $repo (once; later runs reuse it)"
    rm -rf "$repo" "$repo.tmp"
    mkdir -p "$repo.tmp/src"
    (
        cd "$repo.tmp"
        git init -q -b main
        mkdir -p src/m{000..199}/p{0..9}
        awk -v n="$files" 'BEGIN {
            srand(7)
            for (i = 0; i < n; i++) {
                f = sprintf("src/m%03d/p%d/f%05d.rs", i % 200, int(i / 200) % 10, i)
                lines = 10 + int(rand() * 40)
                for (l = 0; l < lines; l++)
                    printf "pub fn f%d_%d(x: u64) -> u64 { x.wrapping_mul(%d) ^ %d } // step %d of the pipeline\n", i, l, int(rand() * 1000000), l, l > f
                close(f)
            }
        }'
        git add -A
        git -c gc.auto=0 -c user.name=bench -c user.email=bench@example.com commit -qm "initial import"
        for round in 1 2; do
            awk -v n="$files" -v r="$round" 'BEGIN {
                srand(r)
                for (k = 0; k < 500; k++) {
                    i = int(rand() * n)
                    f = sprintf("src/m%03d/p%d/f%05d.rs", i % 200, int(i / 200) % 10, i)
                    printf "pub fn round%d_%d() {}\n", r, k >> f
                    close(f)
                }
            }'
            git -c gc.auto=0 -c user.name=bench -c user.email=bench@example.com commit -qam "round $round"
        done
        git gc -q
        touch .bench-complete
    )
    mv "$repo.tmp" "$repo"
    echo "$repo"
}

# Seconds since $1 (an $EPOCHREALTIME), appended to file $2.
since() { elapsed "$1" "$EPOCHREALTIME" "$2"; }

bench_bigrepo() {
    local files="${BENCH_BIGREPO_FILES:-21000}" runs="${BENCH_BIGREPO_RUNS:-3}"
    if ((files < 20000)); then
        log "BENCH_BIGREPO_FILES must be at least 20000"
        return 2
    fi
    local cache run ws clone fresh t0 s name
    cache="$(bigrepo_cache "$files")"
    local tracked
    tracked="$(git -C "$cache" ls-files | wc -l)"
    for name in seed seed_git join join_git join4 join4_git apply apply_git \
        r_seed r_join r_join4 r_apply; do
        : >"$TMP/big.$name"
    done
    for ((run = 1; run <= runs; run++)); do
        ws="$TMP/big-$run/ws"
        clone="$TMP/big-$run/clone"
        fresh="$TMP/big-$run/fresh"
        mkdir -p "$TMP/big-$run"
        log "run $run/$runs: copying the $tracked-file repository"
        cp -a "$cache" "$ws"
        rm -f "$ws/.bench-complete"
        WORKSPACES+=("$ws")
        (cd "$ws" && git status -s >/dev/null && "$BONES" up 2>/dev/null)

        # the anchors first in odd runs, bones first in even ones
        local order="git bones"
        ((run % 2 == 0)) && order="bones git"
        for s in $order; do
            if [ "$s" = git ]; then
                t0="$EPOCHREALTIME"
                git clone -q --no-local "$ws" "$clone"
                since "$t0" "$TMP/big.seed_git"
            else
                t0="$EPOCHREALTIME"
                (cd "$ws" && "$BONES" hub start --detach 2>/dev/null)
                since "$t0" "$TMP/big.seed"
            fi
        done
        for s in $order; do
            if [ "$s" = git ]; then
                t0="$EPOCHREALTIME"
                git -C "$clone" worktree add -q -b w0 "$TMP/big-$run/wt0" 2>/dev/null
                since "$t0" "$TMP/big.join_git"
                t0="$EPOCHREALTIME"
                for n in 1 2 3 4; do
                    git -C "$clone" worktree add -q -b "w$n" "$TMP/big-$run/wt$n" 2>/dev/null &
                done
                wait_all
                since "$t0" "$TMP/big.join4_git"
            else
                t0="$EPOCHREALTIME"
                (cd "$ws" && "$BONES" swarm join --slot s0 --agent bench-0 >/dev/null 2>&1)
                since "$t0" "$TMP/big.join"
                t0="$EPOCHREALTIME"
                for n in 1 2 3 4; do
                    (cd "$ws" && "$BONES" swarm join --slot "s$n" --agent "bench-$n" >/dev/null 2>&1) &
                done
                wait_all
                since "$t0" "$TMP/big.join4"
            fi
        done
        # agents land three commits; the user then fetches them
        for n in 1 2 3; do
            local wt="$ws/.bones/swarm/s$n/wt"
            echo "pub fn agent_$n() {}" >>"$wt/src/m00$n/p0/f0000$n.rs"
            echo "pub fn new_$n() {}" >"$wt/src/agent_$n.rs"
            (cd "$wt" && "$BONES" swarm commit -m "agent $n" >/dev/null 2>&1)
        done
        git clone -q --no-local "$ws" "$fresh"
        for s in $order; do
            if [ "$s" = git ]; then
                t0="$EPOCHREALTIME"
                git -C "$fresh" fetch -q --no-tags "$ws/.bones/hub.git" +refs/heads/trunk:refs/heads/bones/trunk
                since "$t0" "$TMP/big.apply_git"
            else
                t0="$EPOCHREALTIME"
                (cd "$ws" && "$BONES" apply >/dev/null 2>&1)
                since "$t0" "$TMP/big.apply"
            fi
        done
        if [ "$(git -C "$ws" rev-parse bones/trunk)" != "$(git -C "$fresh" rev-parse bones/trunk)" ]; then
            log "bones apply fetched another trunk than git fetch"
            return 1
        fi
        log "run $run: seed $(tail -n1 "$TMP/big.seed")s vs clone $(tail -n1 "$TMP/big.seed_git")s;" \
            "join $(tail -n1 "$TMP/big.join")s vs $(tail -n1 "$TMP/big.join_git")s;" \
            "4 joins $(tail -n1 "$TMP/big.join4")s vs $(tail -n1 "$TMP/big.join4_git")s;" \
            "apply $(tail -n1 "$TMP/big.apply")s vs fetch $(tail -n1 "$TMP/big.apply_git")s"
        # each run's ratio compares neighbours in time: a busy machine
        # slows both sides of a pair alike, not two medians taken apart
        for name in seed join join4 apply; do
            paste "$TMP/big.$name" "$TMP/big.${name}_git" | tail -n1 |
                awk '{ printf "%.6f\n", $1 / $2 }' >>"$TMP/big.r_$name"
        done
        (cd "$ws" && "$BONES" hub stop --force >/dev/null 2>&1)
        rm -rf "$TMP/big-$run"
    done
    local m=()
    for name in seed seed_git join join_git join4 join4_git apply apply_git \
        r_seed r_join r_join4 r_apply; do
        m+=("$(median <"$TMP/big.$name")")
    done
    awk -v s="${m[0]}" -v sg="${m[1]}" -v j="${m[2]}" -v jg="${m[3]}" \
        -v j4="${m[4]}" -v j4g="${m[5]}" -v a="${m[6]}" -v ag="${m[7]}" \
        -v rs="${m[8]}" -v rj="${m[9]}" -v rj4="${m[10]}" -v ra="${m[11]}" \
        -v f="$tracked" -v r="$runs" 'BEGIN {
            printf "bench bigrepo seed_ratio=%.2f join_ratio=%.2f join4_ratio=%.2f apply_ratio=%.2f", rs, rj, rj4, ra
            printf " seed_ms=%.0f clone_ms=%.0f join_ms=%.0f worktree_ms=%.0f join4_ms=%.0f worktree4_ms=%.0f apply_ms=%.0f fetch_ms=%.0f files=%d runs=%d\n", s * 1000, sg * 1000, j * 1000, jg * 1000, j4 * 1000, j4g * 1000, a * 1000, ag * 1000, f, r
        }'
}

build
case "$mode" in
start | stop) bench_start_stop "$mode" ;;
logs) bench_logs ;;
commits) bench_commits ;;
claims) bench_claims ;;
feed) bench_feed ;;
wait) bench_wait ;;
reap) bench_reap ;;
bigrepo) bench_bigrepo ;;
ui) bench_ui ;;
all)
    bench_start_stop both
    bench_logs
    bench_commits
    bench_claims
    bench_feed
    bench_wait
    bench_reap
    bench_bigrepo
    bench_ui
    ;;
esac
