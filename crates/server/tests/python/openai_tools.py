"""Tools through the gateway with the official OpenAI Python SDK: a call, its result sent
back as a tool turn (the assistant message echoed as the SDK returned it), and a streamed
call. Prints one JSON object with what it saw.

Usage: SHOPFLOOR_BASE_URL=… SHOPFLOOR_API_KEY=… SHOPFLOOR_MODEL=… python3 openai_tools.py
"""

import json
import os

import openai

client = openai.OpenAI(
    base_url=os.environ["SHOPFLOOR_BASE_URL"],
    api_key=os.environ["SHOPFLOOR_API_KEY"],
    max_retries=0,
    timeout=20,
)
model = os.environ["SHOPFLOOR_MODEL"]
tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
messages = [{"role": "user", "content": "Weather in Paris?"}]
first = client.chat.completions.create(model=model, messages=messages, tools=tools)
choice = first.choices[0]
call = choice.message.tool_calls[0]
seen = {
    "first": {
        "finish_reason": choice.finish_reason,
        "content": choice.message.content,
        "name": call.function.name,
        "arguments": json.loads(call.function.arguments),
        "id": call.id,
    }
}
messages.append(choice.message.model_dump(exclude_none=False))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"})
second = client.chat.completions.create(model=model, messages=messages, tools=tools)
seen["second"] = {
    "finish_reason": second.choices[0].finish_reason,
    "content": second.choices[0].message.content,
}

names, arguments, finish = [], "", None
stream = client.chat.completions.create(
    model=model, messages=messages[:1], tools=tools, stream=True
)
for chunk in stream:
    for c in chunk.choices:
        for piece in c.delta.tool_calls or []:
            if piece.function and piece.function.name:
                names.append(piece.function.name)
            if piece.function and piece.function.arguments:
                arguments += piece.function.arguments
        if c.finish_reason:
            finish = c.finish_reason
seen["stream"] = {"names": names, "arguments": json.loads(arguments), "finish_reason": finish}
print(json.dumps(seen))
