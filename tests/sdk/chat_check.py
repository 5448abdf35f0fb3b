"""One non-stream and one stream chat completion with the official OpenAI Python SDK; both must
contain the expected text, carry usage, and agree. Run by tests/gateway_anthropic.rs.

Usage: python chat_check.py <base_url> <model> <prompt> <expected substring>
"""
import sys

from openai import OpenAI

base_url, model, prompt, expected = sys.argv[1:5]
client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=30)


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
text = r.choices[0].message.content
if expected not in text:
    fail(f"non-stream: {text!r}")
if r.usage.total_tokens <= 0 or r.model != model:
    fail(f"non-stream meta: {r}")

with client.chat.completions.stream(
    model=model,
    messages=[{"role": "user", "content": prompt}],
    stream_options={"include_usage": True},
) as stream:
    for _ in stream:
        pass
    final = stream.get_final_completion()
streamed = final.choices[0].message.content
if streamed != text:
    fail(f"stream {streamed!r} != non-stream {text!r}")
if final.usage is None or final.usage.total_tokens != r.usage.total_tokens:
    fail(f"stream usage {final.usage} != {r.usage}")
print("ok")
