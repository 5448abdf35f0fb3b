"""The OpenAI Agents SDK (pinned in tests/peers/requirements-agents.txt) against aiproxy's
Responses API, with its default model settings (run by tests/sdk.rs).

Usage: python agents_sdk.py <base_url>   (base_url ends with /v1; assistant `demo` on the mock
backend with the demo MCP server). Exits non-zero with a message on the first failed check.
"""
import asyncio
import sys

from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)
set_default_openai_client(
    AsyncOpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=30),
    use_for_tracing=False,
)
calls = []


def check(cond, msg):
    if not cond:
        print("FAIL:", msg, file=sys.stderr)
        sys.exit(1)


@function_tool
def get_weather(location: str) -> str:
    """Current weather for a city."""
    calls.append(location)
    return f"sunny in {location}"


agent = Agent(name="demo", model="demo", instructions="You are helpful.", tools=[get_weather])


async def main():
    # The assistant's MCP tool runs server-side; the agent sees mcp_call items and the answer.
    r = await Runner.run(agent, "what is 2 + 3?")
    check(r.final_output == "2 + 3 = 5.", f"mcp round: {r.final_output!r}")
    check(any(getattr(i.raw_item, "type", None) == "mcp_call" for i in r.new_items), "mcp_call item")

    # The agent's own function tool: called by the model, run by the SDK, answered.
    r = await Runner.run(agent, "What's the weather in Paris?")
    check(calls == ["Paris"], f"tool calls: {calls}")
    check("sunny in Paris" in r.final_output, f"function tool: {r.final_output!r}")

    # The next turn with the whole history as input (mcp_call and function items included).
    r2 = await Runner.run(agent, r.to_input_list() + [{"role": "user", "content": "echo bye"}])
    check(r2.final_output == "The echo tool returned: bye", f"second turn: {r2.final_output!r}")

    # Streamed runs.
    for question, want in [("what is 2 + 3?", "2 + 3 = 5."), ("What's the weather in Oslo?", "sunny in Oslo")]:
        s = Runner.run_streamed(agent, question)
        deltas = []
        async for ev in s.stream_events():
            if ev.type == "raw_response_event" and ev.data.type == "response.output_text.delta":
                deltas.append(ev.data.delta)
        check(want in s.final_output, f"streamed: {s.final_output!r}")
        check(deltas, "no text deltas streamed")


asyncio.run(main())
print("ok")
