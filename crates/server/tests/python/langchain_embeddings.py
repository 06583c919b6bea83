"""Embeddings through shopfloor with LangChain's OpenAIEmbeddings, as a retrieval pipeline
would call them. check_embedding_ctx_length=False: otherwise LangChain counts tokens with
tiktoken, which fetches its vocabulary from the internet on first use. Prints what came back
as JSON."""

import json
import os

from langchain_openai import OpenAIEmbeddings

common = dict(
    base_url=os.environ["SHOPFLOOR_BASE_URL"],
    api_key=os.environ["SHOPFLOOR_API_KEY"],
    check_embedding_ctx_length=False,
    max_retries=0,
)
embed = OpenAIEmbeddings(model="embed", **common)
documents = embed.embed_documents(["reset my password", "help"])
query = embed.embed_query("reset my password")
minilm = OpenAIEmbeddings(model="minilm", **common).embed_query("where is my refund?")

print(json.dumps({"documents": documents, "query": query, "minilm_dimensions": len(minilm)}))
