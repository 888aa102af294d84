#!/usr/bin/env bash
# The bones demo: installs what is missing, builds bones, makes a throwaway
# example workspace, starts a hub on it, shows `hub status` and the hub log,
# and stops it. Nothing is left behind: the workspace is a temp dir and the
# hub is stopped even if a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

. scripts/setup.sh

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

step "building bones (release)"
cargo build --release --locked --quiet
bones="$repo/target/release/bones"

work="$(mktemp -d -t bones-demo.XXXXXX)"
export HOME="$work/home"            # keep the demo out of the real home
mkdir -p "$HOME"
cleanup() {
    if [ -f "$work/app/.bones/hub.pid" ]; then
        (cd "$work/app" && "$bones" hub stop --force >/dev/null 2>&1) || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step "making an example repository in $work/app"
mkdir -p "$work/app/src"
cd "$work/app"
git init -q -b main
git config user.name demo
git config user.email demo@example.invalid
printf '# app\n\nAn example project for the bones demo.\n' > README.md
printf 'fn main() {\n    println!("hello");\n}\n' > src/main.rs
printf '#!/bin/sh\necho build\n' > build.sh && chmod +x build.sh
git add . && git commit -q -m "initial commit"

step "bones up: make it a workspace"
"$bones" up

step "bones hub start --detach"
"$bones" hub start --detach

step "bones hub status"
"$bones" hub status

step "bones hub status --json | jq: the same, for scripts"
"$bones" hub status --json | jq '{status, pid, uptime_s, trunk_tip, jetstream, parts}'

step "the hub repository: trunk holds the workspace's tracked files"
git --git-dir .bones/hub.git log --oneline trunk
git --git-dir .bones/hub.git ls-tree -r --name-only trunk

step "bones hub start again: idempotent, returns at once"
"$bones" hub start --detach

step "the task board: create three tasks, one blocked by another"
t1="$("$bones" tasks create "Add a greeting" --label feature)"
t2="$("$bones" tasks create "Document the app" --label docs)"
"$bones" tasks create "Release 0.1" --blocked-by "$t1" --blocked-by "$t2" >/dev/null
"$bones" tasks ready

step "agents claim the oldest ready tasks (a compare-and-swap: never twice)"
BONES_AGENT_ID=alice "$bones" tasks claim --next >/dev/null
BONES_AGENT_ID=bob "$bones" tasks claim --next >/dev/null
set +e
BONES_AGENT_ID=bob "$bones" tasks claim "$t1"
echo "exit code: $? (alice holds it)" >&2
set -e
"$bones" tasks list

step "two agents join slots for their tasks: each gets its own checkout of trunk, and the claim passes to the slot"
wt_a="$("$bones" swarm join --slot agent-a --agent alice --task "$t1")"
wt_b="$("$bones" swarm join --slot agent-b --agent bob --task "$t2")"
echo "alice works in $wt_a" >&2
echo "bob   works in $wt_b" >&2

step "both commit at once; the hub lands each on trunk (linear, no merge commits)"
printf 'pub fn greet() -> &'"'"'static str {\n    "hello"\n}\n' > "$wt_a/src/greet.rs"
(cd "$wt_a" && "$bones" swarm commit -m "Add greet") &
commit_a=$!
printf '# app\n\nAn example project, now documented.\n' > "$wt_b/README.md"
(cd "$wt_b" && "$bones" swarm commit -m "Document the app") &
commit_b=$!
# each waited for by pid, so a failed commit fails the demo
wait "$commit_a"
wait "$commit_b"
git --git-dir .bones/hub.git log --oneline trunk

step "both bring their checkouts up to trunk (bones swarm sync)"
(cd "$wt_a" && "$bones" swarm sync)
(cd "$wt_b" && "$bones" swarm sync)

step "bob edits the same line alice changes: the second commit conflicts (exit 5), trunk is untouched"
printf '# app (alice)\n' > "$wt_a/README.md"
(cd "$wt_a" && "$bones" swarm commit -m "Alice retitles")
printf '# app (bob)\n' > "$wt_b/README.md"
set +e
(cd "$wt_b" && "$bones" swarm commit -m "Bob retitles")
echo "exit code: $?" >&2
set -e

step "bob syncs onto trunk: his change comes back with conflict markers"
(cd "$wt_b" && "$bones" swarm sync)
cat "$wt_b/README.md"

step "committing the markers as they are is refused (exit 8): nothing lands"
set +e
(cd "$wt_b" && "$bones" swarm commit -m "Bob retitles again")
echo "exit code: $?" >&2
set -e

step "bob resolves the markers properly, and lands"
printf '# app (alice and bob)\n' > "$wt_b/README.md"
(cd "$wt_b" && "$bones" swarm commit -m "Bob resolves the title")
git --git-dir .bones/hub.git log --format='%h %an: %s' trunk

step "bones swarm status: agent, tasks held, changed files, ahead/behind, last landed"
echo "draft" > "$wt_b/draft.txt"
"$bones" swarm status

step "bones ui: the live view; a screenshot of it is kept in target/demo/ui.png"
url="$("$bones" ui)"
echo "$url" | sed 's/secret=.*/secret=.../'
if command -v chromium >/dev/null 2>&1; then
    mkdir -p "$repo/target/demo"
    # the one-time URL sets the cookie and redirects to the page, which the
    # hub renders with the picture in it
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$work/chromium" --window-size=1400,1000 \
        --screenshot="$repo/target/demo/ui.png" "$url" >/dev/null 2>&1 &&
        echo "screenshot: $repo/target/demo/ui.png" >&2
else
    echo "(no chromium: install it with scripts/setup.sh for the screenshot)" >&2
fi

step "mallory may not close bob's live slot (exit 6)"
set +e
BONES_AGENT_ID=mallory "$bones" swarm close --slot agent-b
echo "exit code: $?" >&2
set -e

step "both are done: they close their slots and their tasks with them (bob's draft is saved, not lost)"
BONES_AGENT_ID=alice "$bones" swarm close --slot agent-a --close-tasks
BONES_AGENT_ID=bob "$bones" swarm close --slot agent-b --close-tasks

step "the release is now ready; an idle agent waiting for work gets it at once"
"$bones" tasks ready
BONES_AGENT_ID=carol "$bones" tasks claim --next --wait 10s

step "bones logs --hub --slot agent-b: bob's slot from join to close"
"$bones" logs --hub --slot agent-b

step "bones apply: trunk comes into the user's repository as branch bones/trunk"
"$bones" apply
git log --oneline bones/trunk

step "bones hub stop"
"$bones" hub stop

step "bones hub status after stop (exit 1: not running)"
set +e
"$bones" hub status
echo "exit code: $?" >&2
set -e

step "bones logs --hub: the lifecycle as humans read it"
"$bones" logs --hub

step "bones logs --hub --json | jq: the rpc entries, raw NDJSON"
"$bones" logs --hub --json | jq -c 'select(.event == "rpc") | {ts, level, rpc, agent, task, slot, commit, took_ms, err}'

step "done; the example workspace is removed"
