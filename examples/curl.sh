#!/usr/bin/env sh
# Talk to routerd with curl. Start it first: `make run` (serves the offline echo model).
# The demo key below is shipped in config/keys.yaml and only allows `echo/*` models.
set -eu

BASE="${ROUTERD_URL:-http://127.0.0.1:8080}"
KEY="${ROUTERD_KEY:-sk-rd-demo-0123456789abcdef}"

echo "== non-streaming"
curl -sS "$BASE/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "echo/echo-1", "messages": [{"role": "user", "content": "Hello, routerd!"}]}'
echo

echo "== streaming (server-sent events; -N turns off curl's buffering)"
curl -sS -N "$BASE/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "echo/echo-1", "stream": true, "stream_options": {"include_usage": true},
       "messages": [{"role": "user", "content": "Hello, routerd!"}]}'
echo

echo "== models"
curl -sS "$BASE/v1/models" -H "Authorization: Bearer $KEY"
echo
