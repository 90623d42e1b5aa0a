"""Small ModernBERT models built in the test run, since no model hub is reachable and no package
ships ModernBERT weights: a byte-level BPE tokenizer trained with `tokenizers` on the multilingual
corpus laid out as ModernBERT's tokenizer.json is (no normalizer, ByteLevel with GPT-2's regex and
no prefix space, [CLS] $A [SEP], the specials and two runs of spaces appended after the trained
vocabulary), and a
random-weight ModernBertModel from transformers' own config class with every third layer global
and a local window much shorter than the texts, saved as a sentence-transformers folder
(Transformer + Pooling (+ Normalize))."""
from __future__ import annotations

from pathlib import Path

from .st_folders import randomize, save_st_folder

SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
WHITESPACE_TOKENS = ["  ", "    "]


def train_tokenizer(texts: list[str], vocab_size: int = 3000):
    """A tokenizers.Tokenizer laid out like ModernBERT's tokenizer.json."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t for t in texts if t.strip()] * 2, trainer)
    # As in ModernBERT's tokenizer.json, [MASK] takes the white space on its left ("a [MASK]").
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False, lstrip=s == "[MASK]") for s in SPECIALS])
    # ModernBERT's vocabulary (OLMo's) also lists runs of spaces as added, non-special tokens.
    tok.add_tokens([AddedToken(s, special=False, normalized=True) for s in WHITESPACE_TOKENS])
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def hf_tokenizer(tok, workdir: Path):
    """transformers' fast tokenizer around the trained one, saved and loaded back as a folder."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    workdir.mkdir(parents=True, exist_ok=True)
    from tokenizers import AddedToken

    mask = AddedToken("[MASK]", special=True, normalized=False, lstrip=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                            mask_token=mask, unk_token="[UNK]").save_pretrained(str(workdir))
    return AutoTokenizer.from_pretrained(str(workdir))


def build_st_folder(out: Path, tok, pooling: str = "mean", normalize: bool = True, max_seq_length: int = 200,
                    n_positions: int = 512, hidden: int = 64, layers: int = 4, heads: int = 4, ff: int = 96,
                    local_attention: int = 16, activation: str = "gelu", extra_rows: int = 5, seed: int = 0) -> Path:
    """A sentence-transformers folder around a random ModernBertModel. Layers 0 and 3 are global,
    1 and 2 see 8 tokens each side; the embedding table has `extra_rows` rows past the tokenizer
    (ModernBERT pads it the same way)."""
    from transformers import ModernBertConfig, ModernBertModel

    hf_tok = hf_tokenizer(tok, out.parent / (out.name + "-tok"))
    cfg = ModernBertConfig(vocab_size=len(hf_tok) + extra_rows, hidden_size=hidden, intermediate_size=ff,
                           num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=n_positions,
                           global_attn_every_n_layers=3, local_attention=local_attention,
                           global_rope_theta=160000.0, local_rope_theta=10000.0, norm_eps=1e-5,
                           hidden_activation=activation, pad_token_id=hf_tok.pad_token_id,
                           cls_token_id=hf_tok.cls_token_id, sep_token_id=hf_tok.sep_token_id,
                           bos_token_id=hf_tok.cls_token_id, eos_token_id=hf_tok.sep_token_id)
    cfg._attn_implementation = "eager"
    model = ModernBertModel(cfg)
    randomize(model, seed)
    return save_st_folder(model, hf_tok, out, pooling, normalize, max_seq_length)
