"""Small XLM-RoBERTa sentence encoders built in the test run, since no model hub is reachable:
a SentencePiece Unigram tokenizer trained on the multilingual corpus (nmt_nfkc, so it carries
a precompiled charsmap like XLM-R's own), wrapped by transformers' XLMRobertaTokenizerFast,
and a random-weight XLMRobertaModel from transformers' own config class, saved as a
sentence-transformers folder (Transformer + Pooling (+ Normalize)). Needs torch,
transformers, sentence-transformers, sentencepiece and protobuf (transformers reads the
.model file with it)."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np

from .st_folders import randomize, save_st_folder


def train_unigram(texts: list[str], path: Path, vocab_size: int = 3000, seed_text: str = "") -> Path:
    import sentencepiece as spm

    buf = io.BytesIO()
    lines = [t for t in texts if t.strip()] + ([seed_text] if seed_text else [])
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 3), model_writer=buf, vocab_size=vocab_size, model_type="unigram",
        normalization_rule_name="nmt_nfkc", character_coverage=0.9995, hard_vocab_limit=False,
        max_sentence_length=1 << 20, num_threads=1, minloglevel=2)
    path.write_bytes(buf.getvalue())
    return path


def xlmr_tokenizer(sp_model: Path, workdir: Path):
    from transformers import XLMRobertaTokenizerFast

    src = workdir / "spm"
    src.mkdir(parents=True, exist_ok=True)
    shutil.copy(sp_model, src / "sentencepiece.bpe.model")
    return XLMRobertaTokenizerFast.from_pretrained(str(src))


def build_st_folder(out: Path, sp_model: Path, pooling: str = "mean", normalize: bool = True,
                    max_seq_length: int = 64, n_positions: int = 96, hidden: int = 64, layers: int = 3,
                    heads: int = 4, ff: int = 128, seed: int = 0) -> Path:
    """A sentence-transformers folder around a random XLMRobertaModel. Weights are drawn much
    larger than transformers' initialisation (std 0.02) so every layer changes the vectors,
    and LayerNorm weights and the padding rows are random too (nothing is left at 0 or 1)."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    tok = xlmr_tokenizer(sp_model, out.parent / (out.name + "-tok"))
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, intermediate_size=ff, max_position_embeddings=n_positions,
                           type_vocab_size=1, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, layer_norm_eps=1e-5)
    torch.manual_seed(seed)
    model = XLMRobertaModel(cfg, add_pooling_layer=False)
    randomize(model, seed)
    save_st_folder(model, tok, out, pooling, normalize, max_seq_length)
    # Real XLM-R folders ship the sentencepiece model beside tokenizer.json (llama.cpp's
    # converter reads it).
    shutil.copy(sp_model, out / "sentencepiece.bpe.model")
    return out


def st_vectors(folder: Path, texts: list[str], normalize: bool) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    return st.encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=normalize)


def config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))
