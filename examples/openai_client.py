"""Use routerd from the official OpenAI Python SDK (`pip install openai`).

Start routerd first (`make run`); the demo key is shipped in config/keys.yaml and only allows the
offline `echo/*` models. Set ROUTERD_BASE_URL / ROUTERD_KEY to point elsewhere.
"""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("ROUTERD_BASE_URL", "http://127.0.0.1:8080/v1"),
    api_key=os.environ.get("ROUTERD_KEY", "sk-rd-demo-0123456789abcdef"),
)

# Non-streaming.
response = client.chat.completions.create(
    model="echo/echo-1",
    messages=[{"role": "user", "content": "Hello, routerd!"}],
)
print("content:", response.choices[0].message.content)
print("usage:", response.usage)

# Streaming; include_usage asks for a final chunk carrying the token counts (and no choices).
stream = client.chat.completions.create(
    model="echo/echo-1",
    messages=[{"role": "user", "content": "Stream this back, please."}],
    stream=True,
    stream_options={"include_usage": True},
)
print("streamed: ", end="")
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
    if chunk.usage is not None:
        print("\nusage:", chunk.usage)
