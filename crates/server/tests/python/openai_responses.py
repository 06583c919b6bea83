"""The Responses API through the gateway with the official OpenAI Python SDK: create, a
stream, a function call with its output sent back, structured output, reading a response back,
previous_response_id, store=false, and an error. Prints one JSON object with what it saw.

Usage: SHOPFLOOR_BASE_URL=… SHOPFLOOR_API_KEY=… SHOPFLOOR_MODEL=… python3 openai_responses.py
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
seen = {"sdk_version": openai.__version__}

first = client.responses.create(
    model=model,
    instructions="Be brief.",
    input="Hello",
    max_output_tokens=64,
    metadata={"ticket": "T-1"},
    user="sdk-user",
)
seen["create"] = {
    "id": first.id,
    "status": first.status,
    "text": first.output_text,
    "input_tokens": first.usage.input_tokens,
    "output_tokens": first.usage.output_tokens,
    "instructions": first.instructions,
    "metadata": first.metadata,
}

again = client.responses.retrieve(first.id)
seen["retrieved"] = {"id": again.id, "text": again.output_text, "status": again.status}

follow = client.responses.create(
    model=model, input="And again?", previous_response_id=first.id
)
seen["follow"] = {"text": follow.output_text, "previous": follow.previous_response_id}

deltas, kinds, final = [], [], None
with client.responses.stream(model=model, input="Hello") as stream:
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
    final = stream.get_final_response()
seen["stream"] = {
    "text": "".join(deltas),
    "pieces": len(deltas),
    "first": kinds[0],
    "last": kinds[-1],
    "final_text": final.output_text,
    "output_tokens": final.usage.output_tokens if final.usage else None,
}

tools = [{
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}]
ask = [{"role": "user", "content": "Weather in Paris?"}]
called = client.responses.create(model=model, input=ask, tools=tools)
call = next(item for item in called.output if item.type == "function_call")
seen["call"] = {"name": call.name, "arguments": json.loads(call.arguments), "call_id": call.call_id}
answered = client.responses.create(
    model=model,
    tools=tools,
    input=ask + [
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
    ],
)
seen["answered"] = answered.output_text

args, names = "", []
with client.responses.stream(model=model, input=ask, tools=tools) as stream:
    for event in stream:
        if event.type == "response.function_call_arguments.delta":
            args += event.delta
        if event.type == "response.output_item.added" and event.item.type == "function_call":
            names.append(event.item.name)
seen["stream_call"] = {"names": names, "arguments": json.loads(args)}

shaped = client.responses.create(
    model=model,
    input="Classify: billing",
    text={"format": {"type": "json_schema", "name": "label", "strict": True, "schema": {
        "type": "object", "properties": {"label": {"type": "string"}},
        "required": ["label"], "additionalProperties": False}}},
)
seen["structured"] = json.loads(shaped.output_text)

private = client.responses.create(model=model, input="Hello", store=False)
try:
    client.responses.retrieve(private.id)
    seen["private"] = "retrieved"
except openai.NotFoundError as e:
    seen["private"] = {"status": e.status_code}

try:
    client.responses.create(model=model, input="Hello", reasoning={"effort": "high"})
    seen["refused"] = None
except openai.BadRequestError as e:
    seen["refused"] = {"status": e.status_code, "param": e.body.get("param")}
print(json.dumps(seen))
