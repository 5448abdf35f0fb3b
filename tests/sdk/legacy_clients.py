"""Real clients of the legacy completions endpoint and of structured output (issue 14).

    python legacy_clients.py BASE_URL MODEL CHECK

CHECK is `llamaindex` (LlamaIndex OpenAILike with its defaults: is_chat_model=False, so
`complete` and `stream_complete` call POST /v1/completions), `litellm` (`text_completion`,
stream and not) or `instructor` (JSON mode with a Pydantic model across a tool round; the
upstream is scripted by the Rust test). The upstream echoes the prompt for the first two.
"""

import sys

base, model, check = sys.argv[1], sys.argv[2], sys.argv[3]

if check == "llamaindex":
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(model=model, api_base=base, api_key="unused", max_retries=0, timeout=60)
    assert llm.metadata.is_chat_model is False
    r = llm.complete("héllo")
    assert r.text == "You said: héllo", r.text
    text = "".join(c.delta or "" for c in llm.stream_complete("again"))
    assert text == "You said: again", text
elif check == "litellm":
    import litellm

    r = litellm.text_completion(
        model=f"openai/{model}", prompt="héllo", api_base=base, api_key="unused", max_retries=0
    )
    assert r.choices[0].text == "You said: héllo", r
    chunks = litellm.text_completion(
        model=f"openai/{model}", prompt="again", api_base=base, api_key="unused", stream=True
    )
    text = "".join((c.choices[0].text or "") for c in chunks if c.choices)
    assert text == "You said: again", text
elif check == "instructor":
    import instructor
    from openai import OpenAI
    from pydantic import BaseModel

    class Answer(BaseModel):
        answer: int

    client = instructor.from_openai(
        OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60),
        mode=instructor.Mode.JSON,
    )
    got = client.chat.completions.create(
        model=model,
        response_model=Answer,
        max_retries=0,
        messages=[{"role": "user", "content": "what is 2 + 3?"}],
    )
    assert isinstance(got, Answer) and got.answer == 5, got
else:
    raise SystemExit(f"unknown check {check}")
print("ok")
