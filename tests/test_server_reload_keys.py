"""Reloading a big keys file after adding and removing a key: the new key works at once, the
removed one is refused, and the unchanged entries are reused rather than parsed again."""

from __future__ import annotations

import hashlib

import openai
import pytest

from tests.conftest import Routerd, key_hash

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def entry(i: int, secret: str) -> str:
    return f"- id: bulk-{i:04d}\n  hash: {key_hash(secret)}\n  user: u{i % 7}\n  models: [echo/*]\n"


async def answer(routerd: Routerd, secret: str) -> str | None:
    async with openai.AsyncOpenAI(
        base_url=f"{routerd.url}/v1", api_key=secret, max_retries=0
    ) as sdk:
        reply = await sdk.chat.completions.create(model="echo/echo-1", messages=MESSAGES)
    return reply.choices[0].message.content


async def test_a_key_added_to_and_one_removed_from_a_big_yaml_file(routerd: Routerd) -> None:
    keys_file = routerd.root / "keys.yaml"
    secrets = [f"sk-rd-bulk-{i:04d}-0123456789abcdef" for i in range(400)]
    assert keys_file.read_text().startswith("keys:\n- id: full\n")  # a list at column 0
    keys_file.write_text(
        keys_file.read_text() + "".join(entry(i, s) for i, s in enumerate(secrets))
    )
    ok, message = await routerd.gateway.reload()
    assert ok, message
    assert await answer(routerd, secrets[123])
    before = routerd.gateway.table.keys_by_hash

    added = "sk-rd-added-key-0123456789abcdef"
    text = keys_file.read_text().replace(entry(123, secrets[123]), "")
    keys_file.write_text(text + f"- id: added\n  hash: {key_hash(added)}\n  models: [echo/*]\n")
    ok, message = await routerd.gateway.reload()
    assert ok, message

    assert await answer(routerd, added)
    with pytest.raises(openai.AuthenticationError) as refused:
        await answer(routerd, secrets[123])
    assert refused.value.status_code == 401
    assert await answer(routerd, secrets[124])
    unchanged = hashlib.sha256(secrets[124].encode()).hexdigest()
    after = routerd.gateway.table.keys_by_hash
    assert after[unchanged].config is before[unchanged].config  # not parsed again
    assert len(after) == len(before)
