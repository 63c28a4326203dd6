"""Pure translation between API wire formats: dict in/dict out, event in/events out, no I/O.

Modules:

- `canonical`            the format-neutral request/response/stream-event types, `TranslationError`,
                         `ToolNameMap` (reversible tool names for strict upstreams).
- `sse`                  incremental SSE parser and frame encoder.
- `openai_chat`          Chat Completions requests, responses, usage, error envelope.
- `openai_chat_parts`    Chat Completions messages and content parts.
- `openai_chat_stream`   `chat.completion.chunk` decoder and encoder.
- `anthropic_messages`   Messages requests and error envelope (re-exports the response codec).
- `anthropic_response`   Messages `message` objects, stop reasons, usage.
- `anthropic_blocks`     Messages content blocks and turn rules.
- `anthropic_stream`     Messages SSE event decoder and encoder.
- `accumulate`           canonical stream events -> one `CanonicalResponse`.

Every `encode_request` returns `(body, dropped)`: `dropped` names the fields that only tuned
behaviour and have no equivalent upstream (for a metric); a field whose loss would change the
answer raises `TranslationError(field, message)` (-> invalid_request). Same-format encoding
re-emits every field, but the server forwards same-format bodies untouched anyway.

Translation table (OpenAI Chat <-> canonical <-> Anthropic Messages):

    system / developer messages       system parts       system (+ role:"system" messages, folded)
    image_url (data: URL | URL)       ImagePart          image source base64 | url
    file (file_data | file_id)        DocumentPart       document source base64 | text | url
    assistant.tool_calls (function)   ToolCallPart       tool_use (input = parsed arguments)
    tool_calls (custom, freeform)     ToolCallPart/custom  tool_use with {"input": "<text>"}
    role:"tool" message               ToolResultPart     tool_result (is_error) in a user turn
    reasoning / reasoning_content     ThinkingPart       thinking (+signature) / redacted_thinking
    tools[].function / custom         Tool               tools[] (+input_schema); names mapped
    tool_choice auto|none|required|fn ToolChoice         auto|none|any|tool
    parallel_tool_calls               parallel_tool_calls  tool_choice.disable_parallel_tool_use
    max_completion_tokens|max_tokens  Sampling           max_tokens (required: catalog default)
    temperature, top_p, stop, seed    Sampling           temperature, top_p, stop_sequences, -
    -                                 Sampling.top_k     top_k
    response_format json_schema       ResponseFormat     output_config.format (json_object: error)
    reasoning_effort                  Reasoning          thinking budget | adaptive + effort
    user                              user               metadata.user_id
    n>1, logprobs, audio output       contract           TranslationError
    finish_reason stop|length|        StopReason         end_turn|max_tokens|stop_sequence|
      tool_calls|content_filter                            tool_use|refusal (pause_turn->stop)
    prompt_tokens (incl. cached)      Usage.input        input + cache_read + cache_creation
    cached_tokens, reasoning_tokens   Usage              cache_read_input_tokens, thinking_tokens

Dropped and counted across formats: cache_control, defer_loading and other tool hints,
context_management, thinking.display, metadata, prompt_cache_key, frequency/presence penalties,
image detail, seed, top_k (to OpenAI), hosted/server tools and their blocks, unsigned or foreign
reasoning history, is_error on OpenAI tool messages.
"""
