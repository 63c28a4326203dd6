"""Gemini `generateContent` <-> canonical: request bodies, responses and usage.

Owns the wire shapes of the Gemini API (`v1beta`) `GenerateContentRequest` and
`GenerateContentResponse` (field names from the REST reference: `contents[].parts[]`,
`systemInstruction`, `tools[].functionDeclarations`, `toolConfig.functionCallingConfig`,
`generationConfig`, `candidates[].finishReason`, `usageMetadata`). The model is not part of the
body: it goes in the URL (`providers/gemini.py`). The stream decoder for `streamGenerateContent`
lives in `gemini_stream.py`.

Gemini has no tool-call ids: decoded calls get `call_<responseId>_<n>` (or the `id` Gemini sends),
and a `functionResponse` needs the function name, found from the earlier call with the same id.
Custom (freeform) tools travel as functions taking `{"input": "<text>"}`, as for Anthropic.
`thoughtSignature`s Gemini attaches to calls are kept in `ToolCallPart.extras` and sent back.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from routerd.formats.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    DocumentPart,
    ImagePart,
    Message,
    Part,
    RawPart,
    Reasoning,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolNameMap,
    ToolResultPart,
    TranslationError,
    Usage,
    check_contract,
    dedupe,
    raw_part,
)

FORMAT = "gemini"
ORIGIN = "gemini"
SIGNATURE = "thoughtSignature"

FINISH_TO_STOP: dict[str, StopReason] = {
    "STOP": StopReason.end_turn,
    "MAX_TOKENS": StopReason.max_tokens,
    "SAFETY": StopReason.content_filter,
    "RECITATION": StopReason.content_filter,
    "LANGUAGE": StopReason.content_filter,
    "BLOCKLIST": StopReason.content_filter,
    "PROHIBITED_CONTENT": StopReason.content_filter,
    "SPII": StopReason.content_filter,
    "IMAGE_SAFETY": StopReason.content_filter,
    "MALFORMED_FUNCTION_CALL": StopReason.error,
    "UNEXPECTED_TOOL_CALL": StopReason.error,
    "OTHER": StopReason.end_turn,
    "FINISH_REASON_UNSPECIFIED": StopReason.end_turn,
}

# The OpenAPI 3.0 subset Gemini's `Schema` accepts; other JSON-schema keys are dropped.
SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)

# Thinking budgets for canonical efforts (-1 = dynamic, the model decides).
EFFORT_BUDGET: dict[str, int] = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": -1,
    "max": -1,
}

_CUSTOM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
}


# ---------------------------------------------------------------------------------------------
# Requests


def encode_request(
    req: CanonicalRequest,
    names: ToolNameMap | None = None,
    default_max: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Canonical request -> `GenerateContentRequest` body (no `model`), plus dropped fields.

    `default_max` is unused: Gemini does not require `maxOutputTokens`."""
    check_contract(req, FORMAT)
    names = names if names is not None else ToolNameMap.for_request(req)
    dropped: list[str] = []
    body: dict[str, Any] = {"contents": encode_contents(req.messages, names, dropped)}
    if req.system:
        body["systemInstruction"] = {"parts": [{"text": p.text} for p in req.system]}
    _encode_tools(req, names, body, dropped)
    config = _generation_config(req, dropped)
    if config:
        body["generationConfig"] = config
    if req.user is not None:
        dropped.append("user")
    dropped.extend(req.extras)
    return body, dedupe(dropped)


def encode_contents(
    messages: tuple[Message, ...], names: ToolNameMap, dropped: list[str]
) -> list[dict[str, Any]]:
    """Messages -> `contents`, adjacent turns of the same role merged (tool results are `user`)."""
    call_names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for msg in messages:
        role = "model" if msg.role == "assistant" else "user"
        parts: list[dict[str, Any]] = []
        for part in msg.content:
            if isinstance(part, ToolCallPart):
                call_names[part.id] = part.name
            encoded = _encode_part(part, names, call_names, dropped)
            if encoded is not None:
                parts.append(encoded)
        dropped.extend(f"messages.{k}" for k in msg.extras)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _encode_part(
    part: Part, names: ToolNameMap, call_names: Mapping[str, str], dropped: list[str]
) -> dict[str, Any] | None:
    dropped.extend(f"messages.content.{k}" for k in getattr(part, "extras", {}) if k != SIGNATURE)
    if isinstance(part, TextPart):
        return {"text": part.text}
    if isinstance(part, ImagePart):
        return _encode_image(part)
    if isinstance(part, DocumentPart):
        return _encode_document(part)
    if isinstance(part, ToolCallPart):
        return _encode_call(part, names)
    if isinstance(part, ToolResultPart):
        return _encode_result(part, names, call_names, dropped)
    if isinstance(part, ThinkingPart):
        return _encode_thinking(part, dropped)
    if isinstance(part, RawPart):
        data = raw_part(part, FORMAT, dropped)
        return dict(data) if data is not None else None
    return None  # pragma: no cover


def _encode_image(part: ImagePart) -> dict[str, Any]:
    if part.data is not None:
        mime = part.media_type or "image/png"
        return {"inlineData": {"mimeType": mime, "data": part.data}}
    url = part.url or ""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime = header[5:].split(";", 1)[0] or "image/png"
        if ";base64" not in header:
            data = base64.b64encode(data.encode()).decode()
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("gs://", "https://generativelanguage.googleapis.com/")):
        return {"fileData": {"mimeType": part.media_type or "image/png", "fileUri": url}}
    raise TranslationError(
        "image_url", "Gemini upstreams need images as base64 data, not a URL to fetch"
    )


def _encode_document(part: DocumentPart) -> dict[str, Any]:
    if part.data is not None:
        mime = part.media_type or "application/pdf"
        return {"inlineData": {"mimeType": mime, "data": part.data}}
    if part.text is not None:
        return {"text": part.text}
    raise TranslationError("document", "Gemini upstreams need documents as base64 data or text")


def _encode_call(part: ToolCallPart, names: ToolNameMap) -> dict[str, Any]:
    if part.kind == "custom":
        args: Any = {"input": part.arguments}
    else:
        try:
            args = orjson.loads(part.arguments or "{}")
        except orjson.JSONDecodeError:
            raise TranslationError(
                "tool_calls.arguments", f"tool call {part.id!r} has arguments that are not JSON"
            ) from None
        if not isinstance(args, dict):
            args = {"value": args}
    out: dict[str, Any] = {"functionCall": {"name": names.to_wire(part.name), "args": args}}
    signature = part.extras.get(SIGNATURE)
    if isinstance(signature, str):
        out[SIGNATURE] = signature
    return out


def _encode_result(
    part: ToolResultPart, names: ToolNameMap, call_names: Mapping[str, str], dropped: list[str]
) -> dict[str, Any]:
    name = call_names.get(part.tool_call_id)
    if name is None:
        raise TranslationError(
            "tool_call_id",
            f"tool result {part.tool_call_id!r} does not answer an earlier tool call",
        )
    if any(not isinstance(p, TextPart) for p in part.content):
        dropped.append("tool_result.content")
    key = "error" if part.is_error else "output"
    response = {key: part.text()}
    return {"functionResponse": {"name": names.to_wire(name), "response": response}}


def _encode_thinking(part: ThinkingPart, dropped: list[str]) -> dict[str, Any] | None:
    if part.origin != ORIGIN or part.redacted or not (part.text or part.signature):
        dropped.append("thinking")
        return None
    out: dict[str, Any] = {"text": part.text, "thought": True}
    if part.signature:
        out[SIGNATURE] = part.signature
    return out


def _encode_tools(
    req: CanonicalRequest, names: ToolNameMap, body: dict[str, Any], dropped: list[str]
) -> None:
    if req.tools:
        declarations = [_encode_tool(t, names, dropped) for t in req.tools]
        body["tools"] = [{"functionDeclarations": declarations}]
        dropped.extend(f"tools.{k}" for t in req.tools for k in t.extras)
        if any(t.strict for t in req.tools):
            dropped.append("tools.strict")
    choice = req.tool_choice
    if choice is not None:
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[choice.mode]
        config: dict[str, Any] = {"mode": mode}
        if choice.mode == "tool" and choice.name:
            config["allowedFunctionNames"] = [names.to_wire(choice.name)]
        body["toolConfig"] = {"functionCallingConfig": config}
    if req.parallel_tool_calls is not None and req.tools:
        dropped.append("parallel_tool_calls")


def _encode_tool(tool: Tool, names: ToolNameMap, dropped: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": names.to_wire(tool.name)}
    if tool.description is not None:
        spec["description"] = tool.description
    if tool.kind == "custom":
        spec["parameters"] = dict(_CUSTOM_PARAMETERS)
    elif tool.parameters is not None and tool.parameters.get("properties"):
        spec["parameters"] = clean_schema(tool.parameters, "tools.parameters", dropped)
    return spec


def clean_schema(schema: Mapping[str, Any], where: str, dropped: list[str]) -> dict[str, Any]:
    """A JSON schema reduced to Gemini's OpenAPI subset; removed keys are reported as
    `<where>.<key>`. `type: [T, "null"]` becomes `type: T, nullable: true`."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in SCHEMA_KEYS:
            dropped.append(f"{where}.{key}")
        elif key == "type" and isinstance(value, list):
            kinds = [v for v in value if v != "null"]
            if kinds:
                out["type"] = kinds[0]
            if "null" in value:
                out["nullable"] = True
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {
                name: clean_schema(sub, where, dropped) if isinstance(sub, Mapping) else sub
                for name, sub in value.items()
            }
        elif key == "items" and isinstance(value, Mapping):
            out[key] = clean_schema(value, where, dropped)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [clean_schema(v, where, dropped) for v in value if isinstance(v, Mapping)]
        else:
            out[key] = value
    return out


def _generation_config(req: CanonicalRequest, dropped: list[str]) -> dict[str, Any]:
    s = req.sampling
    config: dict[str, Any] = {}
    pairs = (
        ("maxOutputTokens", s.max_tokens),
        ("temperature", s.temperature),
        ("topP", s.top_p),
        ("topK", s.top_k),
        ("seed", s.seed),
    )
    config.update((key, value) for key, value in pairs if value is not None)
    if s.stop:
        config["stopSequences"] = list(s.stop)
    rf = req.response_format
    if rf is not None and rf.kind != "text":
        config["responseMimeType"] = "application/json"
        if rf.kind == "json_schema" and rf.schema is not None:
            config["responseSchema"] = clean_schema(rf.schema, "response_format.schema", dropped)
    thinking = thinking_config(req.reasoning)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def thinking_config(r: Reasoning | None) -> dict[str, Any] | None:
    """`generationConfig.thinkingConfig` for canonical reasoning settings, if any."""
    if r is None:
        return None
    if r.mode == "disabled":
        budget = 0
    elif r.budget_tokens is not None:
        budget = r.budget_tokens
    elif r.effort is not None:
        budget = EFFORT_BUDGET.get(r.effort, -1)
    elif r.mode is not None:
        budget = -1
    else:
        return None
    if budget == 0:
        return {"thinkingBudget": 0}
    return {"thinkingBudget": budget, "includeThoughts": True}


# ---------------------------------------------------------------------------------------------
# Responses


def decode_usage(raw: Mapping[str, Any] | None) -> Usage:
    """`usageMetadata` -> canonical usage (prompt includes cached; output includes thoughts)."""
    if not raw:
        return Usage()
    thoughts = raw.get("thoughtsTokenCount") or 0
    return Usage(
        input_tokens=(raw.get("promptTokenCount") or 0) + (raw.get("toolUsePromptTokenCount") or 0),
        output_tokens=(raw.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=raw.get("cachedContentTokenCount") or 0,
        reasoning_tokens=thoughts,
    )


def call_id_prefix(body: Mapping[str, Any]) -> str:
    """The prefix of generated tool-call ids: the response id, or a random token."""
    response_id = body.get("responseId")
    return f"call_{response_id}" if response_id else f"call_{uuid.uuid4().hex[:16]}"


def decode_call(
    raw: Mapping[str, Any], call_id: str, names: ToolNameMap | None, signature: Any = None
) -> ToolCallPart:
    """A `functionCall` object -> a tool call (Gemini's own `id` wins over `call_id`)."""
    wire = str(raw.get("name") or "")
    name = names.from_wire(wire) if names is not None else wire
    args = raw.get("args") or {}
    extras = {SIGNATURE: signature} if isinstance(signature, str) else {}
    if names is not None and names.kind(name) == "custom":
        text = args.get("input", "") if isinstance(args, Mapping) else args
        return ToolCallPart(
            id=raw.get("id") or call_id,
            name=name,
            arguments=str(text),
            kind="custom",
            extras=extras,
        )
    arguments = orjson.dumps(args).decode()
    return ToolCallPart(id=raw.get("id") or call_id, name=name, arguments=arguments, extras=extras)


def decode_parts(
    raw_parts: Any, prefix: str, names: ToolNameMap | None, first_call: int = 0
) -> list[Part]:
    """`content.parts` -> canonical parts; adjacent text parts are joined."""
    out: list[Part] = []
    calls = first_call
    for p in raw_parts or ():
        if "functionCall" in p:
            out.append(decode_call(p["functionCall"], f"{prefix}_{calls}", names, p.get(SIGNATURE)))
            calls += 1
        elif p.get("thought"):
            sig = p.get(SIGNATURE)
            out.append(ThinkingPart(text=p.get("text", ""), signature=sig, origin=ORIGIN))
        elif isinstance(p.get("text"), str):
            if out and isinstance(out[-1], TextPart):
                out[-1] = TextPart(text=out[-1].text + p["text"])
            else:
                out.append(TextPart(text=p["text"]))
    return out


def stop_reason(finish: str | None, has_calls: bool) -> StopReason:
    """A Gemini `finishReason` -> canonical stop reason (`tool_use` when a call was made)."""
    stop = FINISH_TO_STOP.get(finish or "STOP", StopReason.end_turn)
    return StopReason.tool_use if has_calls and stop == StopReason.end_turn else stop


def decode_response(body: Mapping[str, Any], names: ToolNameMap | None = None) -> CanonicalResponse:
    """A `GenerateContentResponse` -> canonical response (first candidate)."""
    candidates = body.get("candidates") or []
    usage = decode_usage(body.get("usageMetadata"))
    common: dict[str, Any] = {
        "id": body.get("responseId") or "",
        "model": body.get("modelVersion") or "",
        "usage": usage,
        "source_format": FORMAT,
    }
    if not candidates:
        blocked = (body.get("promptFeedback") or {}).get("blockReason")
        if blocked:
            return CanonicalResponse(
                content=(),
                stop_reason=StopReason.content_filter,
                raw_stop_reason=str(blocked),
                **common,
            )
        raise TranslationError("candidates", "the Gemini response has no candidates")
    candidate = candidates[0]
    content = decode_parts(
        (candidate.get("content") or {}).get("parts"), call_id_prefix(body), names
    )
    finish = candidate.get("finishReason")
    has_calls = any(isinstance(p, ToolCallPart) for p in content)
    return CanonicalResponse(
        content=tuple(content),
        stop_reason=stop_reason(finish, has_calls),
        raw_stop_reason=finish,
        **common,
    )
