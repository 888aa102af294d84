#!/usr/bin/env python3
"""Drives `bones mcp` with the official Python MCP SDK (a third-party client).

Two agent sessions, each its own `bones mcp` server, join, claim, edit a
file in their checkout, commit, share and close; every successful tool
result is validated against the outputSchema the server declared (with
jsonschema); bad inputs get tool errors carrying the exit code's kind and
change nothing (the board, the slots and trunk are compared before and
after).

Usage: two_sessions.py BONES WORKSPACE HUB_REPO
The environment carries HOME and BONES_NATS_SERVER. Prints one line
`mcp-e2e ok ...` and exits 0 when every check passed; otherwise an
assertion names the check and the exit code is not 0.
"""

import asyncio
import json
import os
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import jsonschema
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BONES, WORKSPACE, HUB_REPO = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

# every tool the server must offer; each is called successfully below
TOOLS = {
    "join", "restore", "status", "sync", "commit", "close",
    "tasks_create", "tasks_ready", "tasks_show", "tasks_claim_next",
    "tasks_close", "tasks_release", "share", "feed", "prime",
}


class Agent:
    """One agent session: its own `bones mcp` server process."""

    def __init__(self, name, session, schemas, validated):
        self.name = name
        self.session = session
        self.schemas = schemas
        self.validated = validated

    async def ok(self, tool, args=None):
        """Calls a tool that must succeed; returns its structured content,
        validated against the tool's outputSchema."""
        result = await self.session.call_tool(tool, args or {})
        text = result.content[0].text if result.content else ""
        assert not result.is_error, f"{self.name}: {tool}({args}) failed: {text}"
        data = result.structured_content
        assert data is not None, f"{tool}: no structured content"
        schema = self.schemas[tool]
        assert schema is not None, f"{tool}: no outputSchema declared"
        jsonschema.validators.validator_for(schema)(schema).validate(data)
        # the text block carries the same document, for clients that read text
        assert json.loads(text) == data, f"{tool}: text and structured content differ"
        self.validated.add(tool)
        return data

    async def fails(self, tool, args, kind, code):
        """Calls a tool that must fail with a tool error of `kind`."""
        result = await self.session.call_tool(tool, args)
        assert result.is_error, f"{self.name}: {tool}({args}) did not fail: {result}"
        error = json.loads(result.content[0].text)
        assert error["kind"] == kind and error["code"] == code, f"{tool}({args}): {error}"
        assert error["message"], f"{tool}: empty message"
        return error


async def open_agent(stack, name, agent_id, validated):
    env = {
        "HOME": os.environ["HOME"],
        "BONES_NATS_SERVER": os.environ["BONES_NATS_SERVER"],
        "BONES_AGENT_ID": agent_id,
        "NO_COLOR": "1",
    }
    params = StdioServerParameters(command=BONES, args=["mcp"], env=env, cwd=str(WORKSPACE))
    read, write = await stack.enter_async_context(stdio_client(params))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    listed = await session.list_tools()
    schemas = {tool.name: tool.output_schema for tool in listed.tools}
    assert TOOLS <= set(schemas), f"missing tools: {TOOLS - set(schemas)}"
    for tool in listed.tools:
        assert tool.output_schema, f"{tool.name}: no outputSchema"
        jsonschema.validators.validator_for(tool.output_schema).check_schema(tool.output_schema)
    return Agent(name, session, schemas, validated)


def trunk():
    return subprocess.run(
        ["git", f"--git-dir={HUB_REPO}", "rev-parse", "refs/heads/trunk"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def trunk_files():
    out = subprocess.run(
        ["git", f"--git-dir={HUB_REPO}", "ls-tree", "-r", "--name-only", "refs/heads/trunk"],
        check=True, capture_output=True, text=True,
    ).stdout
    return set(out.split())


async def board(agent):
    """The board, the slots and the feed as comparable values."""
    ready = await agent.ok("tasks_ready")
    status = await agent.ok("status")
    feed = await agent.ok("feed", {"limit": 1000})
    return (
        [(t["id"], t["status"], t.get("claimed_by")) for t in ready["tasks"]],
        [(s["slot"], s["state"]) for s in status["slots"]],
        [e["id"] for e in feed["entries"]],
    )


async def main():
    validated = set()
    async with AsyncExitStack() as stack:
        a = await open_agent(stack, "a", "agent-a", validated)
        b = await open_agent(stack, "b", "agent-b", validated)

        primer = await a.ok("prime")
        assert primer["agent"] == "agent-a", primer
        assert primer["slot"] is None and "The loop" in primer["text"], primer
        # the loop in tool calls, with the error kinds each can end with
        assert [s["command"] for s in primer["steps"]] == [
            "join", "tasks_claim_next", "sync", "commit", "close"], primer
        assert primer["steps"][3]["exit_codes"][0]["kind"] == "conflict", primer
        assert "Take one before editing: join" in primer["text"], primer["text"]

        first = await a.ok("tasks_create", {"title": "Write a.txt", "priority": 2})
        second = await a.ok("tasks_create", {"title": "Write b.txt", "priority": 1})

        # bad inputs: a tool error with the exit code's kind, and nothing changes
        before = (await board(a), trunk())
        await a.fails("join", {"slot": "Bad Slot!"}, "usage", 2)
        await a.fails("tasks_show", {"id": "t-nosuchtask"}, "not_found", 1)
        await a.fails("tasks_close", {"id": "t-nosuchtask", "reason": "done"}, "not_found", 1)
        await a.fails("tasks_claim_next", {"label": "no such label!"}, "usage", 2)
        await a.fails("commit", {"message": "nothing joined"}, "usage", 2)
        await a.fails("share", {"type": "learning", "text": "   "}, "usage", 2)
        await a.fails("feed", {"limit": 0}, "usage", 2)
        after = (await board(a), trunk())
        assert before == after, f"a bad input changed something: {before} -> {after}"

        # both join: each its own checkout
        joined_a = await a.ok("join", {"slot": "alpha"})
        joined_b = await b.ok("join", {})
        assert joined_a["slot"] == "alpha" and joined_a["agent_id"] == "agent-a", joined_a
        assert joined_b["slot"] == "agent-agent-b", joined_b
        assert joined_a["checkout"] != joined_b["checkout"]
        # joining the slot another session holds is refused: held
        await b.fails("join", {"slot": "alpha"}, "usage", 2)  # b already holds its own
        third = await open_agent(stack, "c", "agent-c", validated)
        await third.fails("join", {"slot": "alpha"}, "held", 6)

        # claims: the first ready task (priority) to a, the next to b, then none
        claimed_a = await a.ok("tasks_claim_next")
        assert claimed_a["id"] == first["id"] and claimed_a["claimed_by"] == "alpha", claimed_a
        released = await a.ok("tasks_release", {"id": first["id"]})
        assert released["status"] == "open", released
        claimed_a = await a.ok("tasks_claim_next")
        assert claimed_a["id"] == first["id"], claimed_a
        claimed_b = await b.ok("tasks_claim_next")
        assert claimed_b["id"] == second["id"], claimed_b
        await third.fails("tasks_claim_next", {}, "nothing_ready", 7)
        shown = await b.ok("tasks_show", {"id": second["id"]})
        assert shown["claimed_by"] == "agent-agent-b", shown

        # edit, commit: both land on trunk
        Path(joined_a["checkout"], "a.txt").write_text("from a\n")
        Path(joined_b["checkout"], "b.txt").write_text("from b\n")
        landed_a = await a.ok("commit", {"message": "Add a.txt"})
        landed_b = await b.ok("commit", {"message": "Add b.txt"})
        assert not landed_a["nothing_to_commit"] and landed_a["landed"]["landed"], landed_a
        assert landed_b["landed"]["trunk"] == trunk(), (landed_b, trunk())
        nothing = await a.ok("commit", {"message": "Nothing"})
        assert nothing["nothing_to_commit"], nothing
        synced = await a.ok("sync")
        assert synced["trunk"] == trunk() and not synced["conflicts"], synced
        assert Path(joined_a["checkout"], "b.txt").exists(), "sync did not bring b's work"
        assert {"a.txt", "b.txt"} <= trunk_files(), trunk_files()

        # share and read back
        shared = await a.ok("share", {"type": "learning", "text": "a.txt holds a's work"})
        again = await b.ok("share", {"type": "learning", "text": "a.txt holds a's work"})
        assert again["duplicate"] and again["id"] == shared["id"], again
        await b.ok("share", {"type": "decision", "text": "b.txt is b's", "tags": ["demo"]})
        feed = await b.ok("feed", {"limit": 1})
        assert len(feed["entries"]) == 1 and feed["more"], feed
        feed = await b.ok("feed", {"since": feed["next_since"]})
        assert [e["type"] for e in feed["entries"]] == ["decision"], feed
        primer = await b.ok("prime")
        assert primer["slot"]["slot"] == "agent-agent-b", primer
        assert primer["feed"]["total"] == 2, primer

        # close the tasks and the slots
        done = await a.ok("tasks_close", {"id": first["id"], "reason": "done"})
        assert done["status"] == "closed", done
        await b.ok("tasks_close", {"id": second["id"], "reason": "done"})
        closed_a = await a.ok("close", {})
        assert closed_a["slot"] == "alpha" and closed_a["rescue_ref"] is None, closed_a

        # b leaves work uncommitted: closing saves it, restore brings it back
        Path(joined_b["checkout"], "wip.txt").write_text("half done\n")
        closed_b = await b.ok("close", {})
        assert closed_b["rescue_ref"], closed_b
        restored = await b.ok("restore", {"slot": "agent-agent-b"})
        assert restored["restored"] == closed_b["rescue_ref"], restored
        assert Path(restored["checkout"], "wip.txt").read_text() == "half done\n"
        await b.ok("close", {"result": "abandon"})

        status = await a.ok("status")
        assert all(s["state"] != "active" for s in status["slots"]), status
        assert status["slot"] is None, status

    missing = TOOLS - validated
    assert not missing, f"never validated: {missing}"
    print(f"mcp-e2e ok tools={len(TOOLS)} validated={len(validated)} trunk={trunk()}")


asyncio.run(main())
