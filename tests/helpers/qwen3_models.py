"""Small Qwen3 embedding models built in the test run, since no model hub is reachable and no
package ships Qwen3 weights: a byte-level BPE tokenizer trained with `tokenizers` on the
multilingual corpus under Qwen2's normalizer (NFC) and pre-tokenizer (its split regex, then
ByteLevel without prefix space), with Qwen's added tokens appended after the trained vocabulary
and Qwen3-Embedding's post-processor (every text ends with <|endoftext|>); and a random-weight
Qwen3Model from transformers' own config class, saved as a sentence-transformers folder
(Transformer + Pooling lasttoken + Normalize) with Qwen3-Embedding's query prompt."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .st_folders import randomize, save_st_folder

# Qwen2's pre-tokenizer regex, as its tokenizer.json spells it.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_TOKENS = ["<think>", "</think>"]  # Qwen3 lists these as added, not special, not normalized
QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


def train_tokenizer(texts: list[str], vocab_size: int = 3000):
    """A tokenizers.Tokenizer laid out like Qwen's tokenizer.json."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t for t in texts if t.strip()] * 2, trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in USER_TOKENS])
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A:0 <|endoftext|>:0", pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
        special_tokens=[("<|endoftext|>", eot)])
    return tok


def qwen_tokenizer(tok, workdir: Path):
    """transformers' Qwen2 tokenizer around the trained one, saved and loaded back as a folder
    (what a model folder holds): eos <|im_end|>, pad <|endoftext|>, no BOS, left padding."""
    from transformers import AutoTokenizer, Qwen2TokenizerFast

    workdir.mkdir(parents=True, exist_ok=True)
    Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                       unk_token=None, bos_token=None, padding_side="left").save_pretrained(str(workdir))
    return AutoTokenizer.from_pretrained(str(workdir))


def build_st_folder(out: Path, tok, max_seq_length: int = 160, n_positions: int = 512, hidden: int = 64,
                    layers: int = 3, heads: int = 4, kv_heads: int = 2, head_dim: int = 32, ff: int = 160,
                    extra_rows: int = 5, rope_theta: float = 10000.0, seed: int = 0) -> Path:
    """A sentence-transformers folder around a random Qwen3Model (weights drawn as st_folders
    draws them, RMSNorm weights around 1). The embedding table has `extra_rows` more rows than
    the tokenizer has tokens (Qwen3 pads it the same way)."""
    from transformers import Qwen3Config, Qwen3Model

    hf_tok = qwen_tokenizer(tok, out.parent / (out.name + "-tok"))
    cfg = Qwen3Config(vocab_size=len(hf_tok) + extra_rows, hidden_size=hidden, intermediate_size=ff,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      head_dim=head_dim, max_position_embeddings=n_positions, rms_norm_eps=1e-6,
                      rope_theta=rope_theta, tie_word_embeddings=True, attention_bias=False,
                      use_sliding_window=False, eos_token_id=hf_tok.convert_tokens_to_ids("<|endoftext|>"),
                      pad_token_id=hf_tok.pad_token_id, bos_token_id=None)
    model = Qwen3Model(cfg)
    randomize(model, seed)
    return save_st_folder(model, hf_tok, out, "lasttoken", True, max_seq_length,
                          prompts={"query": QUERY_PROMPT, "document": ""})


def st_vectors(folder: Path, texts: list[str], prompt_name: str | None = None, batch_size: int = 16) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    return st.encode(texts, batch_size=batch_size, convert_to_numpy=True, prompt_name=prompt_name)


def config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))
