"""Small BERT-family sentence encoders built in the test run (no model hub is reachable): random-weight
BertModel / DistilBertModel from transformers' own config classes, with all-MiniLM-L6-v2's real WordPiece
tokenizer, saved as sentence-transformers folders. They stand for the variants users bring: CLS pooling
(bge), a max_seq_length of the sentence-transformers config, and no token-type embeddings (DistilBERT)."""
from __future__ import annotations

import shutil
from pathlib import Path


def build_st_folder(out: Path, tokenizer_dir: Path, kind: str = "bert", pooling: str = "mean",
                    normalize: bool = True, max_seq_length: int = 64, hidden: int = 48, layers: int = 2,
                    heads: int = 4, ff: int = 96, seed: int = 0, activation: str = "gelu") -> Path:
    """Weights are drawn larger than transformers' initialisation so every layer changes the vectors."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel, DistilBertConfig, DistilBertModel

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if kind == "bert":
        cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=ff, max_position_embeddings=128, type_vocab_size=2, hidden_act=activation)
        model = BertModel(cfg, add_pooling_layer=False)
    elif kind == "distilbert":
        cfg = DistilBertConfig(vocab_size=len(tok), dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=ff,
                               max_position_embeddings=128, activation=activation)
        model = DistilBertModel(cfg)
    else:
        raise ValueError(kind)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "LayerNorm.weight" in name or "layer_norm.weight" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.15 * noise)
    model.eval()
    hf_dir = out.parent / (out.name + "-hf")
    model.save_pretrained(str(hf_dir))
    tok.save_pretrained(str(hf_dir))
    modules = [Transformer(str(hf_dir), max_seq_length=max_seq_length), Pooling(hidden, pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    shutil.rmtree(hf_dir)
    return out
