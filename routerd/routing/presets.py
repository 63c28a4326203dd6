"""Presets (OpenRouter-style): `model: "@preset/NAME"` expands to a catalog entry's settings.

Pure: a request body in, the expanded body out. The preset fixes the model (and the `models`
fallback list and `provider` preferences, unless the request gives its own), supplies default
parameters (the request's own fields win), and puts its system prompt before the request's own,
in the ingress's format: a leading system message (Chat), `system` (Messages), `instructions`
(Responses). Embeddings take only the model and parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routerd.config.model import Preset
from routerd.errors import ErrorCode, RouterdError

PREFIX = "@preset/"


def _with_system(body: dict[str, Any], system: str, ingress: str) -> None:
    if ingress == "chat_completions":
        messages = body.get("messages")
        if isinstance(messages, list):
            body["messages"] = [{"role": "system", "content": system}, *messages]
    elif ingress == "messages":
        own = body.get("system")
        if isinstance(own, list):
            body["system"] = [{"type": "text", "text": system}, *own]
        else:
            body["system"] = f"{system}\n\n{own}" if own else system
    elif ingress == "responses":
        own = body.get("instructions")
        body["instructions"] = f"{system}\n\n{own}" if own else system


def expand_preset(
    presets: Mapping[str, Preset], body: dict[str, Any], ingress: str, *, parameters: bool = True
) -> tuple[dict[str, Any], str | None]:
    """The body with its preset applied and the requested `@preset/NAME`, or the body unchanged
    and None when it names no preset. `parameters=False` leaves out the preset's parameters
    (token counting takes no sampling fields)."""
    model = body.get("model")
    if not isinstance(model, str) or not model.startswith(PREFIX):
        return body, None
    preset = presets.get(model[len(PREFIX) :])
    if preset is None:
        raise RouterdError(
            ErrorCode.model_not_found, f"preset {model!r} does not exist", param="model"
        )
    defaults = dict(preset.parameters) if parameters else {}
    out = {**defaults, **body, "model": preset.model}
    if preset.models and "models" not in body:
        out["models"] = list(preset.models)
    if preset.provider and "provider" not in body:
        out["provider"] = dict(preset.provider)
    if preset.system:
        _with_system(out, preset.system, ingress)
    return out, model
