"""Embeddings through shopfloor with the official OpenAI Python SDK, as an application would
call them: only the base URL and the key change. Prints what came back as JSON."""

import json
import os

import openai

client = openai.OpenAI(base_url=os.environ["SHOPFLOOR_BASE_URL"], api_key=os.environ["SHOPFLOOR_API_KEY"])

default = client.embeddings.create(model="embed", input=["reset my password", "help"])
floats = client.embeddings.create(model="embed", input="reset my password", encoding_format="float")
minilm = client.embeddings.create(model="minilm", input="where is my refund?")

print(json.dumps({
    "default": [d.embedding for d in default.data],
    "float": [d.embedding for d in floats.data],
    "minilm_dimensions": len(minilm.data[0].embedding),
    "usage": default.usage.prompt_tokens,
}))
