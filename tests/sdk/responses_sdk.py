"""The official OpenAI Python SDK against aiproxy's Responses API (run by tests/sdk.rs).

Usage: python responses_sdk.py <base_url>   (base_url ends with /v1; assistant `demo` on the
mock backend with the demo MCP server). Exits non-zero with a message on the first failed check.
"""
import json
import sys

import openai
from openai import OpenAI
from pydantic import BaseModel

base_url = sys.argv[1]
client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30)


def check(cond, msg):
    if not cond:
        print("FAIL:", msg, file=sys.stderr)
        sys.exit(1)


def shape(resp):
    """Output items without their per-run ids."""
    out = []
    for item in resp.output:
        d = item.to_dict()
        d.pop("id", None)
        d.pop("call_id", None)
        for part in d.get("content") or []:
            part.pop("parsed", None)  # added by the stream helper
        out.append(d)
    return out


# responses.create with an MCP tool round
r = client.responses.create(model="demo", input="what is 2 + 3?")
check(r.status == "completed" and r.model == "demo", f"create: {r}")
check(r.id.startswith("resp_"), r.id)
types = [i.type for i in r.output]
check(types == ["message", "mcp_call", "message"], f"items: {types}")
call = r.output[1]
check(call.server_label == "demo" and call.name == "add" and call.output == "5", f"mcp_call: {call}")
check("2 + 3 = 5." in r.output_text, f"output_text: {r.output_text!r}")
check(r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens > 0, f"usage: {r.usage}")

# responses.stream: the helper's final response equals the non-stream one
deltas = []
seen = []
with client.responses.stream(model="demo", input="what is 2 + 3?") as stream:
    for event in stream:
        seen.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
    final = stream.get_final_response()
check(seen[0] == "response.created" and seen[-1] == "response.completed", f"events: {seen}")
check("response.mcp_call.completed" in seen, f"mcp events: {seen}")
check(final.output_text == r.output_text, f"stream text {final.output_text!r} != {r.output_text!r}")
check("".join(deltas) == r.output_text, f"deltas {''.join(deltas)!r}")
check(shape(final) == shape(r), f"stream output {shape(final)} != {shape(r)}")
check(final.usage.total_tokens == r.usage.total_tokens, "stream usage")

# Raw stream=True iterator
events = list(client.responses.create(model="demo", input="hello there", stream=True))
check([e.sequence_number for e in events] == list(range(len(events))), "sequence numbers")
check(events[-1].type == "response.completed", events[-1].type)
check(events[-1].response.output_text == "You said: hello there", events[-1].response.output_text)


# responses.parse with a Pydantic model
class Sum(BaseModel):
    expression: str
    result: int


p = client.responses.parse(model="demo", input="what is 2 + 3?", text_format=Sum)
check(isinstance(p.output_parsed, Sum), f"parsed: {p.output_parsed!r}")
check(p.output_parsed.result == 5, f"parsed result: {p.output_parsed}")

# A function-tool round trip
tools = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]
first = client.responses.create(model="demo", input="What's the weather in Paris?", tools=tools)
calls = [i for i in first.output if i.type == "function_call"]
check(len(calls) == 1 and calls[0].name == "get_weather", f"function call: {first.output}")
check(json.loads(calls[0].arguments) == {"location": "Paris"}, calls[0].arguments)
second = client.responses.create(
    model="demo",
    previous_response_id=first.id,
    tools=tools,
    input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
)
check("sunny" in second.output_text, f"after tool: {second.output_text!r}")

# The same round trip with the whole conversation as input (no store)
convo = [{"role": "user", "content": "What's the weather in Paris?"}] + [i.to_dict() for i in first.output]
convo.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "cloudy"})
third = client.responses.create(model="demo", input=convo, tools=tools, store=False)
check("cloudy" in third.output_text, f"full input: {third.output_text!r}")

# Streamed function call via the helper
with client.responses.stream(model="demo", input="What's the weather in Paris?", tools=tools) as stream:
    final = stream.get_final_response()
check([i.type for i in final.output][-1] == "function_call", f"streamed call: {final.output}")

# retrieve / delete, and the errors as SDK exceptions
got = client.responses.retrieve(r.id)
check(got.output_text == r.output_text, "retrieve")
client.responses.delete(r.id)
try:
    client.responses.retrieve(r.id)
    check(False, "deleted response still there")
except openai.NotFoundError:
    pass
try:
    client.responses.create(model="demo", input="x", previous_response_id=r.id)
    check(False, "unknown previous_response_id accepted")
except openai.BadRequestError as e:
    check(e.code == "previous_response_not_found", f"code: {e.code}")
try:
    client.responses.create(model="demo", input="x", tools=[{"type": "web_search"}])
    check(False, "web_search accepted")
except openai.BadRequestError as e:
    check("web_search" in str(e), str(e))

print("ok")
