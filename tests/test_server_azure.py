"""The azure provider type: OpenAI's wire format at Azure's per-deployment URL with `api-key`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from routerd.metrics import Metrics
from routerd.server.gateway import Gateway
from tests.conftest import FULL_KEY, write_config
from tests.fakes import REPLY_TEXT, FakeOpenAI
from tests.serving import RouterdServer


@pytest.fixture
async def azure_client(
    tmp_path: Path, fake_upstream: FakeOpenAI
) -> AsyncIterator[openai.AsyncOpenAI]:
    config_path = write_config(tmp_path / "cfg", fake_upstream.base_url)
    providers = config_path.parent / "providers.yaml"
    doc: dict[str, Any] = yaml.safe_load(providers.read_text())
    doc["providers"]["az"] = {
        "type": "azure",
        "base_url": fake_upstream.base_url.removesuffix("/v1"),
        "api_key": "azure-secret",
        "api_version": "2024-10-21",
    }
    doc["models"]["az/gpt-test"] = {
        "pricing": {"prompt": 0.4, "completion": 1.6},
        "deployments": [{"provider": "az", "model": "my-gpt-deployment"}],
    }
    providers.write_text(yaml.safe_dump(doc))
    server = RouterdServer(Gateway.load(config_path, Metrics()))
    await server.start_server()
    url = str(server.make_url("/v1"))
    sdk = openai.AsyncOpenAI(base_url=url, api_key=FULL_KEY, max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()
        await server.close()


async def test_azure_deployment_url_version_and_key(
    azure_client: openai.AsyncOpenAI, fake_upstream: FakeOpenAI
) -> None:
    reply = await azure_client.chat.completions.create(
        model="az/gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == REPLY_TEXT
    assert fake_upstream.azure_calls == [("my-gpt-deployment", {"api-version": "2024-10-21"})]
    headers = {k.lower(): v for k, v in fake_upstream.last.headers.items()}
    assert headers["api-key"] == "azure-secret"
    assert "authorization" not in headers
