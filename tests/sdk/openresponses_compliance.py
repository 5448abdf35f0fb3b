"""The Open Responses compliance scenarios against aiproxy (run by tests/sdk.rs).

Each scenario sends the request the Open Responses compliance suite sends (basic response,
streaming, system prompt, tool calling, tool calling streamed, the function-call round trip,
image input, multi-turn, previous_response_id) as plain HTTP, and validates every response
object and every stream event against the specification's published OpenAPI document (version
2026-04-24, the copy shipped in the pinned `openresponses-py` package) with `jsonschema`, then
applies the suite's checks (output present, status completed, the function-call events, ...).

Usage: python openresponses_compliance.py <base_url> <model>   (base_url ends with /v1).
Prints one line per scenario; exits non-zero if any failed.
"""
import json
import sys
from importlib import resources

import httpx
import jsonschema

BASE, MODEL = sys.argv[1], sys.argv[2]
SPEC = json.loads(resources.files("openresponses").joinpath("openapi/2026-04-24.json").read_text())
assert SPEC["info"]["version"] == "2026-04-24", SPEC["info"]


def validator(schema):
    """A validator for `schema` whose `#/components/...` references resolve in the spec."""
    root = dict(schema, components=SPEC["components"])
    return jsonschema.Draft202012Validator(root)


RESPONSE = validator({"$ref": "#/components/schemas/ResponseResource"})
STREAM = SPEC["paths"]["/responses"]["post"]["responses"]["200"]["content"]["text/event-stream"]["schema"]
# The stream's schema is a oneOf over the event schemas: validate each event against the whole
# union, and report the errors of the member its `type` names (the union's own are unreadable).
EVENT = validator(STREAM)
EVENTS = {}
for member in STREAM["oneOf"]:
    name = member["$ref"].rsplit("/", 1)[1]
    for t in SPEC["components"]["schemas"][name]["properties"]["type"].get("enum", []):
        EVENTS[t] = validator(member)

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}
        },
        "required": ["location"],
    },
}
# A 4x4 red PNG (the suite's image scenario sends an image as a data URL).
IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGP4z8AARwzEcQCukw/x0F8jngAAAABJRU5ErkJggg=="

client = httpx.Client(timeout=30, headers={"Authorization": "Bearer unused"})


def schema_errors(v, doc, what):
    return [
        f"{what}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
        for e in v.iter_errors(doc)
    ]


def create(body):
    """POST /responses (non-stream): (response, errors)."""
    r = client.post(f"{BASE}/responses", json={**body, "stream": False})
    if r.status_code != 200:
        return None, [f"HTTP {r.status_code}: {r.text[:500]}"]
    doc = r.json()
    return doc, schema_errors(RESPONSE, doc, "response")


def create_streamed(body):
    """POST /responses with stream: true: (final response, events, errors)."""
    events, errors, final = [], [], None
    with client.stream("POST", f"{BASE}/responses", json={**body, "stream": True}) as r:
        if r.status_code != 200:
            r.read()
            return None, [], [f"HTTP {r.status_code}: {r.text[:500]}"]
        if not r.headers.get("content-type", "").startswith("text/event-stream"):
            errors.append(f"content-type {r.headers.get('content-type')}")
        name, data = None, []
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                text = "\n".join(data)
                name_seen, name, data = name, None, []
                if text == "[DONE]":
                    continue
                ev = json.loads(text)
                events.append(ev)
                what = f"event {len(events) - 1} ({ev.get('type')})"
                member = EVENTS.get(ev.get("type"))
                if member is None:
                    errors.append(f"{what}: not an event type of the specification")
                elif not EVENT.is_valid(ev):
                    errors += schema_errors(member, ev, what) or [f"{what}: matches no single event schema"]
                if name_seen is not None and name_seen != ev.get("type"):
                    errors.append(f"event name {name_seen!r} != type {ev.get('type')!r}")
                if ev.get("type") in ("response.completed", "response.failed", "response.incomplete"):
                    final = ev["response"]
    if final is None:
        errors.append("no response.completed / failed / incomplete event")
    else:
        errors += schema_errors(RESPONSE, final, "final response")
    seqs = [e.get("sequence_number") for e in events]
    if seqs != list(range(len(events))):
        errors.append(f"sequence numbers {seqs}")
    return final, events, errors


def has_output(resp):
    return [] if resp and resp.get("output") else ["response has no output items"]


def completed(resp):
    status = resp and resp.get("status")
    return [] if status == "completed" else [f'expected status "completed", got {status!r}']


def has_output_type(resp, kind):
    found = any(i.get("type") == kind for i in (resp or {}).get("output", []))
    return [] if found else [f'expected an output item of type "{kind}"']


def user(text):
    return {"type": "message", "role": "user", "content": text}


def basic():
    resp, errors = create({"model": MODEL, "input": [user("Say hello in exactly 3 words.")]})
    return errors + has_output(resp) + completed(resp)


def streaming():
    resp, events, errors = create_streamed({"model": MODEL, "input": [user("Count from 1 to 5.")]})
    if not events:
        errors.append("no streaming events received")
    types = [e["type"] for e in events]
    if types[:2] != ["response.created", "response.in_progress"]:
        errors.append(f"stream starts {types[:2]}")
    if "response.output_text.delta" not in types:
        errors.append("no response.output_text.delta event")
    return errors + completed(resp)


def system_prompt():
    resp, errors = create(
        {
            "model": MODEL,
            "input": [
                {"type": "message", "role": "system", "content": "You are a pirate. Always respond in pirate speak."},
                user("Say hello."),
            ],
        }
    )
    return errors + has_output(resp) + completed(resp)


def tool_calling():
    resp, errors = create(
        {"model": MODEL, "input": [user("What's the weather like in San Francisco?")], "tools": [WEATHER_TOOL]}
    )
    return errors + has_output(resp) + has_output_type(resp, "function_call")


def tool_calling_streaming():
    resp, events, errors = create_streamed(
        {"model": MODEL, "input": [user("What's the weather like in San Francisco?")], "tools": [WEATHER_TOOL]}
    )
    types = [e["type"] for e in events]
    for t, kind in (("response.output_item.added", "function_call"), ("response.output_item.done", "function_call")):
        if not any(e["type"] == t and (e.get("item") or {}).get("type") == kind for e in events):
            errors.append(f"missing {t} with a {kind} item")
    for t in ("response.function_call_arguments.delta", "response.function_call_arguments.done"):
        if t not in types:
            errors.append(f"missing {t}")
    return errors + has_output_type(resp, "function_call")


def function_call_round_trip():
    first, errors = create(
        {
            "model": MODEL,
            "input": "Use the weather tool to get the temperature in San Francisco.",
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
        }
    )
    calls = [i for i in (first or {}).get("output", []) if i.get("type") == "function_call"]
    if errors or not calls:
        return errors + ["first response did not include a function_call with call_id"]
    second, errors = create(
        {
            "model": MODEL,
            "previous_response_id": first["id"],
            "input": [{"type": "function_call_output", "call_id": calls[0]["call_id"], "output": "64 degrees and clear"}],
        }
    )
    return errors + has_output(second) + completed(second)


def image_input():
    resp, errors = create(
        {
            "model": MODEL,
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What do you see in this image? Answer in one sentence."},
                        {"type": "input_image", "image_url": IMAGE},
                    ],
                }
            ],
        }
    )
    return errors + has_output(resp) + completed(resp)


def multi_turn():
    resp, errors = create(
        {
            "model": MODEL,
            "input": [
                user("My name is Alice."),
                {
                    "type": "message",
                    "role": "assistant",
                    "content": "Hello Alice! Nice to meet you. How can I help you today?",
                },
                user("What is my name?"),
            ],
        }
    )
    return errors + has_output(resp) + completed(resp)


def previous_response_id():
    first, errors = create({"model": MODEL, "input": "Remember this code word: papaya. Reply with only OK."})
    if errors:
        return errors
    second, errors = create(
        {"model": MODEL, "previous_response_id": first["id"], "input": "What code word did I ask you to remember?"}
    )
    errors += has_output(second) + completed(second)
    if second and second.get("previous_response_id") != first["id"]:
        errors.append(f"previous_response_id echoed as {second.get('previous_response_id')!r}")
    return errors


SCENARIOS = [
    ("basic-response", basic),
    ("streaming-response", streaming),
    ("system-prompt", system_prompt),
    ("tool-calling", tool_calling),
    ("tool-calling-streaming", tool_calling_streaming),
    ("function-call-roundtrip", function_call_round_trip),
    ("image-input", image_input),
    ("multi-turn", multi_turn),
    ("previous-response-id", previous_response_id),
]

failed = 0
for name, run in SCENARIOS:
    try:
        errors = run()
    except Exception as e:  # a scenario that crashes fails, the others still run
        errors = [f"{type(e).__name__}: {e}"]
    print(("PASS " if not errors else "FAIL ") + name)
    for e in errors[:20]:
        print("   ", e)
    failed += bool(errors)
print(f"{len(SCENARIOS) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
