"""sentence-transformers reference vectors, cached on disk.

Computing EmbeddingGemma's references on the CPU takes minutes; they depend
only on the model folder, the texts and the torch/sentence-transformers
versions, so they are cached under $EMBEDQ_HOME/refs keyed by all of those.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from schemas.home import embedq_home


def _key(model_dir: Path, texts: list[str], extra: dict) -> str:
    import sentence_transformers
    import torch

    h = hashlib.sha256()
    h.update(str(Path(model_dir).resolve()).encode())
    h.update(json.dumps([torch.__version__, sentence_transformers.__version__, extra], sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:20]


def st_vectors(model_dir: Path, texts: list[str], prompt_name: str | None = None, batch_size: int = 16,
               truncate_dim: int | None = None, progress: bool = False) -> np.ndarray:
    """Normalized sentence-transformers vectors of `texts`, from the cache when it has them
    (`progress`: a progress bar while computing; it does not change the cache key)."""
    home = embedq_home()
    extra = {"prompt_name": prompt_name, "truncate_dim": truncate_dim}
    path = home / "refs" / f"{Path(model_dir).name}-{_key(model_dir, texts, extra)}.npy"
    if path.exists():
        return np.load(path)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu", truncate_dim=truncate_dim)
    # Sorted by length so padding stays small; restored to input order after.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vec = st.encode([texts[i] for i in order], batch_size=batch_size, normalize_embeddings=True,
                    prompt_name=prompt_name, convert_to_numpy=True, show_progress_bar=progress)
    out = np.empty_like(vec)
    out[order] = vec
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out
