"""Talks to `shopfloor serve` with the official OpenAI Python SDK, as an existing application
would: only base_url and api_key change. Prints one JSON object with what it saw.

Usage: SHOPFLOOR_BASE_URL=http://127.0.0.1:PORT/v1 SHOPFLOOR_API_KEY=sf_… python3 openai_client.py
"""

import json
import os
import sys

import openai

client = openai.OpenAI(
    base_url=os.environ["SHOPFLOOR_BASE_URL"],
    api_key=os.environ["SHOPFLOOR_API_KEY"],
    max_retries=0,
    timeout=20,
)
seen = {"sdk_version": openai.__version__}

models = client.models.list()
seen["models"] = sorted(m.id for m in models.data)

completion = client.chat.completions.create(
    model="fast",
    messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ],
    user="sdk-user",
)
seen["completion"] = {
    "id": completion.id,
    "content": completion.choices[0].message.content,
    "finish_reason": completion.choices[0].finish_reason,
    "total_tokens": completion.usage.total_tokens,
}

raw = client.chat.completions.with_raw_response.create(
    model="fast", messages=[{"role": "user", "content": "Hi"}]
)
seen["run_id_header"] = raw.headers.get("x-shopfloor-run-id")

stream = client.chat.completions.create(
    model="fast",
    messages=[{"role": "user", "content": "Hi"}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage, stream_id = [], None, None, None
for chunk in stream:
    stream_id = chunk.id
    if chunk.usage is not None:
        usage = chunk.usage.total_tokens
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
seen["stream"] = {
    "id": stream_id,
    "pieces": len(pieces),
    "content": "".join(pieces),
    "finish_reason": finish,
    "total_tokens": usage,
}

workflow = client.chat.completions.create(
    model="workflow:triage", messages=[{"role": "user", "content": "billing question"}]
)
seen["workflow"] = workflow.choices[0].message.content

errors = {}
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
except openai.NotFoundError as e:
    errors["unknown_model"] = {"status": e.status_code, "code": e.code}
try:
    openai.OpenAI(
        base_url=os.environ["SHOPFLOOR_BASE_URL"], api_key="sf_wrong", max_retries=0
    ).models.list()
except openai.AuthenticationError as e:
    errors["bad_key"] = {"status": e.status_code, "code": e.code}
seen["errors"] = errors

json.dump(seen, sys.stdout)
