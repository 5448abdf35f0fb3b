"""API keys with scopes and limits, through the official OpenAI Python SDK (run by tests/keys.rs).

Usage: python keys_sdk.py <base_url>. The gateway has assistants team-a-chat, team-a-code and
secret-b on the mock backend, and keys: `open-key` (unscoped), `sk-team-a` (team-a-*, rpm 60),
`sk-tokens` (tpm 6000). Exits non-zero with a message on the first failed check.
"""
import sys
import time

import httpx
import openai
from openai import OpenAI

base_url = sys.argv[1]


def check(cond, msg):
    if not cond:
        print("FAIL:", msg, file=sys.stderr)
        sys.exit(1)


def client(key, retries=0, hook=None):
    http = httpx.Client(event_hooks={"response": [hook]} if hook else {})
    return OpenAI(base_url=base_url, api_key=key, max_retries=retries, timeout=30, http_client=http)


def chat(c, model, text="hi"):
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])


# Scopes: an unscoped key sees every assistant; a scoped one only its own.
ids = sorted(m.id for m in client("open-key").models.list())
check(ids == ["secret-b", "team-a-chat", "team-a-code"], f"unscoped models: {ids}")
team = client("sk-team-a")
ids = sorted(m.id for m in team.models.list())
check(ids == ["team-a-chat", "team-a-code"], f"scoped models: {ids}")
check(team.models.retrieve("team-a-code").id == "team-a-code", "retrieve in scope")


def not_found(call):
    try:
        call()
    except openai.NotFoundError as e:
        return e
    check(False, "expected 404")


# Out of scope is answered exactly like a model that does not exist: no hint.
hidden = not_found(lambda: team.models.retrieve("secret-b"))
absent = not_found(lambda: team.models.retrieve("no-such-b"))
check(hidden.body == {**absent.body, "message": absent.body["message"].replace("no-such-b", "secret-b")},
      f"retrieve hint: {hidden.body} vs {absent.body}")
hidden = not_found(lambda: chat(team, "secret-b"))
absent = not_found(lambda: chat(team, "no-such-b"))
check(hidden.code == "model_not_found" and hidden.param == "model", f"chat 404: {hidden.body}")
check(hidden.body["message"] == absent.body["message"].replace("no-such-b", "secret-b"), "chat hint")
hidden = not_found(lambda: team.responses.create(model="secret-b", input="hi"))
check(hidden.code == "model_not_found", f"responses 404: {hidden.body}")
check(chat(client("open-key"), "secret-b").choices[0].message.content == "You said: hi", "unscoped use")

# rpm 60: a bucket of 60 refilled at one per second. Without retries the SDK raises
# RateLimitError once it is empty.
ok, err = 0, None
for _ in range(300):
    try:
        chat(team, "team-a-chat")
        ok += 1
    except openai.RateLimitError as e:
        err = e
        break
check(err is not None, f"no 429 after {ok} requests at rpm 60")
check(40 <= ok <= 120, f"{ok} requests admitted before the 429")
check(err.status_code == 429 and err.code == "rate_limit_exceeded" and err.type == "rate_limit_error",
      f"429 shape: {err.body}")
check("sk-team-a" not in err.message and "team-a" in err.message and "rpm" in err.message,
      f"429 message: {err.message}")
ra = err.response.headers.get("retry-after")
ms = err.response.headers.get("retry-after-ms")
check(ra is not None and int(ra) >= 1 and ms is not None and 0 < int(ms) <= 1000, f"retry-after: {ra} {ms}")
check(err.response.headers.get("x-request-id"), "x-request-id on 429")

# With retries, the SDK waits as told and the request goes through once the bucket refills.
statuses = []
retrying = client("sk-team-a", retries=4, hook=lambda r: statuses.append(r.status_code))
waited = None
for _ in range(300):
    before = len(statuses)
    t0 = time.monotonic()
    r = chat(retrying, "team-a-code")
    check(r.choices[0].message.content == "You said: hi", "answer after retry")
    seen = statuses[before:]
    if 429 in seen:
        check(seen[-1] == 200 and seen[0] == 429, f"attempts: {seen}")
        waited = time.monotonic() - t0
        break
check(waited is not None, f"the retrying client never met a 429: {statuses[-5:]}")
check(waited < 10, f"retry took {waited:.1f}s")

# tpm 6000 (100 per second), charged from the reported usage after the request: one big
# request is admitted while the bucket is positive and leaves it about 200 tokens short.
tok = client("sk-tokens")
big = " ".join(["word"] * 3100)
r = chat(tok, "team-a-chat", big)
check(r.usage.total_tokens > 6000, f"usage {r.usage}")
try:
    chat(tok, "team-a-chat")
    check(False, "tpm: second request admitted with the bucket negative")
except openai.RateLimitError as e:
    check("tpm" in e.message, f"tpm message: {e.message}")
    check(1 <= int(e.response.headers["retry-after"]) <= 5, f"tpm retry-after {e.response.headers}")
statuses.clear()
t0 = time.monotonic()
r = chat(client("sk-tokens", retries=3, hook=lambda r: statuses.append(r.status_code)), "team-a-chat")
check(statuses[0] == 429 and statuses[-1] == 200, f"tpm attempts: {statuses}")
check(r.choices[0].message.content == "You said: hi" and time.monotonic() - t0 < 15, "tpm retry")

# Limits are per key: the unscoped key was never limited.
check(chat(client("open-key"), "team-a-chat").choices[0].message.content == "You said: hi", "other key")
print("ok")
