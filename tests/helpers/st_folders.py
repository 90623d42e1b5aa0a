"""What the random-weight test models share: weights drawn so every layer matters, and the
sentence-transformers folder (Transformer + Pooling (+ Normalize)) they are saved as."""
from __future__ import annotations

import shutil
from pathlib import Path


def randomize(model, seed: int) -> None:
    """Weights much larger than transformers' initialisation (std 0.02), so every layer changes the
    vectors; norm weights around 1 and biases random too (nothing is left at exactly 0 or 1)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            # BERT's LayerNorm, DistilBERT's *_layer_norm, Qwen3's RMSNorms (*layernorm, q_norm, norm).
            if "LayerNorm.weight" in name or name.endswith(("norm.weight", "layernorm.weight")):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.15 * noise)
    model.eval()


def save_st_folder(model, tok, out: Path, pooling: str, normalize: bool, max_seq_length: int,
                   prompts: dict[str, str] | None = None) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    hf_dir = out.parent / (out.name + "-hf")
    model.save_pretrained(str(hf_dir))
    tok.save_pretrained(str(hf_dir))
    modules = [Transformer(str(hf_dir), max_seq_length=max_seq_length),
               Pooling(model.config.hidden_size, pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu", prompts=prompts).save(str(out))
    shutil.rmtree(hf_dir)
    return out
