"""openai Python SDK structured output across a tool round (issue 14 point 2).

    python structured_parse.py BASE_URL MODEL

The upstream (scripted by the Rust test) says "Let me check." and calls a tool, then answers
with JSON; `chat.completions.parse` and the `stream` helper must both get a parsed model.
"""

import sys

from openai import OpenAI
from pydantic import BaseModel


class Answer(BaseModel):
    answer: int


base, model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)
messages = [{"role": "user", "content": "what is 2 + 3?"}]

done = client.chat.completions.parse(model=model, messages=messages, response_format=Answer)
parsed = done.choices[0].message.parsed
assert parsed == Answer(answer=5), done

with client.chat.completions.stream(model=model, messages=messages, response_format=Answer) as s:
    final = s.get_final_completion()
assert final.choices[0].message.parsed == Answer(answer=5), final
print("ok")
