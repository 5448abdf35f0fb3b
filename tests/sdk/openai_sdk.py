"""The official OpenAI Python SDK as a client of aiproxy (run by tests/sdk.rs).

Usage: python openai_sdk.py <base_url>   (base_url ends with /v1; assistant `demo` on the mock
backend with the demo MCP server). Exits non-zero with a message on the first failed check.
"""
import json
import sys

import openai
from openai import OpenAI

base_url = sys.argv[1]
client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30)


def check(cond, msg):
    if not cond:
        print("FAIL:", msg, file=sys.stderr)
        sys.exit(1)


# Models
ids = [m.id for m in client.models.list()]
check(ids == ["demo"], f"models: {ids}")
check(client.models.retrieve("demo").owned_by == "aiproxy", "retrieve")

# Non-stream conversation with a tool round
r = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "what is 2 + 3?"}])
text = r.choices[0].message.content
check("5" in text, f"non-stream content: {text!r}")
check(r.model == "demo" and r.choices[0].finish_reason == "stop", f"non-stream meta: {r}")
check(r.usage.total_tokens > 0, "usage")

# Raw stream with usage
parts, usage, finish = [], None, None
for chunk in client.chat.completions.create(
    model="demo",
    messages=[{"role": "user", "content": "what is 2 + 3?"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
check("".join(parts) == text, f"stream text {''.join(parts)!r} != {text!r}")
check(finish == "stop" and usage is not None and usage.total_tokens == r.usage.total_tokens, "stream usage/finish")

# The strict stream helper (needs object, index, delta, finish_reason in every chunk)
with client.chat.completions.stream(
    model="demo", messages=[{"role": "user", "content": "what is 2 + 3?"}]
) as stream:
    for _ in stream:
        pass
    final = stream.get_final_completion()
check(final.choices[0].message.content == text, f"helper: {final.choices[0].message.content!r}")

# Client-defined tools come back to the client, and the conversation continues
weather = {
    "type": "function",
    "function": {"name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
msgs = [{"role": "user", "content": "echo hello"}]
r = client.chat.completions.create(model="demo", messages=msgs, tools=[weather])
check(r.choices[0].finish_reason == "stop", f"MCP tools still run with client tools: {r}")
check("hello" in (r.choices[0].message.content or ""), f"the MCP echo answered: {r}")
check(not r.choices[0].message.tool_calls, f"no client tool call for an MCP request: {r}")

msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
r = client.chat.completions.create(model="demo", messages=msgs, tools=[weather])
choice = r.choices[0]
check(choice.finish_reason == "tool_calls", f"client tool not called: {r}")
calls = choice.message.tool_calls or []
check(len(calls) == 1, f"one tool call: {calls}")
call = calls[0]
check(call.type == "function" and call.function.name == "get_weather", f"tool call: {call}")
check(isinstance(call.id, str) and call.id, f"tool call id: {call}")
args = json.loads(call.function.arguments)
check(args == {"city": "Paris"}, f"tool call arguments: {call.function.arguments!r}")
# The client runs the tool and sends the result back: the conversation continues from it.
msgs += [
    choice.message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"},
]
r = client.chat.completions.create(model="demo", messages=msgs, tools=[weather])
check(r.choices[0].finish_reason == "stop", f"after the tool result: {r}")
check("sunny, 21 degrees" in (r.choices[0].message.content or ""), f"answer from the result: {r}")

# Errors map to SDK exceptions
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model accepted")
except openai.NotFoundError as e:
    check(e.code == "model_not_found", f"code {e.code}")
try:
    client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}], n=2)
    check(False, "n=2 accepted")
except openai.BadRequestError:
    pass

print("ok")
