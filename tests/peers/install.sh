#!/usr/bin/env bash
# Install the pinned test peers into <repo>/.test-peers (idempotent, offline-safe once done):
#   node_modules/  server-everything, the MCP conformance suite, Node 22 for it
#   venv/          openai (client SDK) and mcp (Python MCP SDK servers)
#   venv-agents/   openai-agents (needs a newer openai than venv/ pins)
#   venv-compat/   litellm, LlamaIndex OpenAILike, instructor (legacy completions, JSON mode)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest="$root/.test-peers"
mkdir -p "$dest"
stamp="$dest/.stamp"
want=$( (cat "$here/package.json" "$here/requirements.txt" "$here/requirements-agents.txt" "$here/requirements-compat.txt"; cat "$here/package-lock.json" 2>/dev/null || true) | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
cp "$here/package.json" "$dest/"
[ -f "$here/package-lock.json" ] && cp "$here/package-lock.json" "$dest/"
if [ -f "$dest/package-lock.json" ]; then
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
else
  (cd "$dest" && npm install --no-audit --no-fund --loglevel=error && cp package-lock.json "$here/")
fi
python3 -m venv "$dest/venv"
"$dest/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
python3 -m venv "$dest/venv-agents"
"$dest/venv-agents/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-agents.txt"
python3 -m venv "$dest/venv-compat"
"$dest/venv-compat/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-compat.txt"
echo "$want" > "$stamp"
