"""A tool round through the gateway against a real model server (`make test-real`).

    python tool_round.py BASE_URL MODEL STREAM_MODEL

The request forces the demo `add` tool (llama-cpp-python constrains the first round to the
call); the gateway runs it and sends the next round with the assistant's tool-call message
(content "") and the tool result, `tool_choice: auto`. Whatever the small model then says, the
answer must be a 200 with a string content, in both modes.
"""

import sys

from openai import OpenAI

base, model, stream_model = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300)
args = dict(
    model=model,
    messages=[{"role": "user", "content": "What is 2 + 3? Use the add tool."}],
    tool_choice={"type": "function", "function": {"name": "demo__add"}},
)

done = client.chat.completions.create(**args)
msg = done.choices[0].message
assert isinstance(msg.content, str), done
assert done.choices[0].finish_reason in ("stop", "length"), done
print("non-stream:", repr(msg.content[:200]))

text = []
finish = None
for chunk in client.chat.completions.create(stream=True, **{**args, "model": stream_model}):
    if chunk.choices:
        text.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
assert finish in ("stop", "length"), finish
print("stream:", repr("".join(text)[:200]))
