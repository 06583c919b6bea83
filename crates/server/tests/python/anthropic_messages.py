"""The official anthropic Python SDK against the gateway's /v1/messages: a message, a stream,
a tool call with its result sent back, a streamed tool call, and the errors the SDK raises.
Prints one JSON object with what it saw.

Usage: SHOPFLOOR_BASE_URL=…/v1 SHOPFLOOR_API_KEY=… SHOPFLOOR_MODEL=… python3 anthropic_messages.py
"""

import json
import os

import anthropic

base = os.environ["SHOPFLOOR_BASE_URL"]
# The SDK's base URL is the server's root: it adds /v1/messages itself.
root = base[: -len("/v1")] if base.endswith("/v1") else base
client = anthropic.Anthropic(
    base_url=root, api_key=os.environ["SHOPFLOOR_API_KEY"], max_retries=0, timeout=20
)
model = os.environ["SHOPFLOOR_MODEL"]
seen = {"sdk_version": anthropic.__version__}

hello = [{"role": "user", "content": "Hello"}]
message = client.messages.create(
    model=model,
    max_tokens=64,
    system="Be brief.",
    messages=hello,
    metadata={"user_id": "sdk-user"},
    stop_sequences=["END"],
)
seen["create"] = {
    "id": message.id,
    "type": message.type,
    "role": message.role,
    "text": message.content[0].text,
    "stop_reason": message.stop_reason,
    "input_tokens": message.usage.input_tokens,
    "output_tokens": message.usage.output_tokens,
}

with client.messages.stream(model=model, max_tokens=64, messages=hello) as stream:
    pieces = list(stream.text_stream)
    final = stream.get_final_message()
seen["stream"] = {
    "id": final.id,
    "text": "".join(pieces),
    "pieces": len(pieces),
    "final_text": final.content[0].text,
    "stop_reason": final.stop_reason,
    "output_tokens": final.usage.output_tokens,
}

tools = [{
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}]
ask = [{"role": "user", "content": "Weather in Paris?"}]
first = client.messages.create(model=model, max_tokens=64, messages=ask, tools=tools)
call = next(b for b in first.content if b.type == "tool_use")
seen["first"] = {
    "stop_reason": first.stop_reason,
    "id": call.id,
    "name": call.name,
    "input": call.input,
}
second = client.messages.create(
    model=model,
    max_tokens=64,
    tools=tools,
    messages=ask
    + [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"},
        ]},
    ],
)
seen["second"] = {"stop_reason": second.stop_reason, "text": second.content[0].text}

with client.messages.stream(model=model, max_tokens=64, messages=ask, tools=tools) as stream:
    final = stream.get_final_message()
streamed_call = next(b for b in final.content if b.type == "tool_use")
seen["stream_tool"] = {
    "stop_reason": final.stop_reason,
    "name": streamed_call.name,
    "input": streamed_call.input,
}


def error_of(call):
    try:
        call()
    except anthropic.APIStatusError as e:
        return {
            "status": e.status_code,
            "class": type(e).__name__,
            "type": e.body["error"]["type"],
            "message": e.body["error"]["message"],
        }
    return None


try:
    seen["count"] = client.messages.count_tokens(
        model=model, system="Be brief.", messages=hello + [
            {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Again"}],
    ).input_tokens
except anthropic.APIStatusError as e:
    seen["count"] = {"status": e.status_code, "message": e.body["error"]["message"]}

seen["errors"] = {
    "unknown_model": error_of(lambda: client.messages.create(
        model="no-such-model", max_tokens=8, messages=hello)),
    "bad_key": error_of(lambda: anthropic.Anthropic(
        base_url=root, api_key="sf_wrong", max_retries=0).messages.create(
        model=model, max_tokens=8, messages=hello)),
    "document": error_of(lambda: client.messages.create(
        model=model, max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
        ]}])),
}

# An image and a question about it: carried to the upstream in its own form.
pictured = client.messages.create(
    model=model, max_tokens=16, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]}])
seen["image"] = {"id": pictured.id, "text": pictured.content[0].text}
print(json.dumps(seen))
