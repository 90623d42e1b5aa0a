"""Small BERT-family sentence encoders built in the test run (no model hub is reachable): random-weight
BertModel / DistilBertModel from transformers' own config classes, with all-MiniLM-L6-v2's real WordPiece
tokenizer, saved as sentence-transformers folders. They stand for the variants users bring: CLS pooling
(bge), a max_seq_length of the sentence-transformers config, and no token-type embeddings (DistilBERT)."""
from __future__ import annotations

from pathlib import Path

from .st_folders import randomize, save_st_folder


def build_st_folder(out: Path, tokenizer_dir: Path, kind: str = "bert", pooling: str = "mean",
                    normalize: bool = True, max_seq_length: int = 64, hidden: int = 48, layers: int = 2,
                    heads: int = 4, ff: int = 96, seed: int = 0, activation: str = "gelu") -> Path:
    """Weights are drawn larger than transformers' initialisation so every layer changes the vectors."""
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
    randomize(model, seed)
    return save_st_folder(model, tok, out, pooling, normalize, max_seq_length)
