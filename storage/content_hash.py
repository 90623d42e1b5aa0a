"""The key of the embedding cache: identical inputs to the same model configuration hash alike."""
from __future__ import annotations

import hashlib


def content_hash(model_fingerprint: str, prompt_name: str | None, dims: int | None, normalize: bool,
                 text: str) -> str:
    # Length-prefixed fields, so no text can make two different inputs hash to the same bytes.
    h = hashlib.sha256()
    for part in (model_fingerprint, prompt_name or "", str(dims or ""), "1" if normalize else "0", text):
        b = part.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()
