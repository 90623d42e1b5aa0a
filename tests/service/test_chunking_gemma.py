"""overflow="chunk" on EmbeddingGemma (worker/chunking.py over its SentencePiece offsets): its prompts end in a
space that the tokenizer joins to the text's first word, so the token across the boundary belongs to the
text; a text that fits is then exactly one window with embed's ids, and a long text's windows tile it."""
from __future__ import annotations

import numpy as np
import pytest

from native import Model
from worker.chunking import encode_chunks, windows

pytestmark = pytest.mark.gemma


@pytest.fixture(scope="module")
def small_window_gemma(gemma_gguf) -> Model:
    return Model(gemma_gguf, threads=2, max_tokens=40)  # short windows keep the forward passes cheap


def test_prompted_windows_have_embeds_ids_and_tile_the_text(small_window_gemma, corpus):
    m = small_window_gemma
    prompt = m.prompt_text("document")
    assert prompt.endswith(" ")
    short = "Queues batch texts."
    long = " ".join(t for t in corpus[:40] if t.strip())[:1500]
    encoded, wins = encode_chunks(m, [short, long], prompt, overlap=8)
    seqs = np.split(encoded.ids, np.cumsum(encoded.lengths)[:-1])
    # The short text: one window, the very ids embed runs (prompt and specials included).
    assert [(w.idx, w.chunk) for w in wins][0] == (0, 0) and wins[1].idx == 1
    assert seqs[0].tolist() == m.encode([short], prompt_name="document").ids.tolist()
    assert (wins[0].char_start, wins[0].char_end) == (0, len(short))
    # The long one: windows of <= 40 tokens sharing 8, each [bos] + prompt + window + [eos].
    ids, offsets = m.token_offsets(prompt + long)
    # The prompt's tokens in prompt + text: its last space went to the text's first token.
    n_prompt = int((offsets[:, 1] <= len(prompt)).sum())
    assert n_prompt == len(m.encode([""], prompt_name="document").ids) - 3  # alone: [bos] prompt "▁" [eos]
    head = [m.special_ids[0]] + ids[:n_prompt].tolist()
    body = ids[n_prompt:]
    long_wins = [w for w in wins if w.idx == 1]
    size = m.max_tokens - len(head) - 1
    assert [(w.token_start, w.token_end) for w in long_wins] == windows(len(body), size, 8)
    assert len(long_wins) >= 5
    for w, seq in zip(long_wins, seqs[1:]):
        assert seq.tolist() == head + body[w.token_start:w.token_end].tolist() + [m.special_ids[1]]
        assert len(seq) <= m.max_tokens
    assert long_wins[0].char_start == 0 and long_wins[-1].char_end == len(long)
    # The windows' character spans cover the text without holes.
    for a, b in zip(long_wins, long_wins[1:]):
        assert b.char_start <= a.char_end
    vectors, _ = m.embed_encoded(encoded)
    np.testing.assert_allclose(vectors[0], m.embed([short], prompt_name="document")[0], rtol=0, atol=1e-6)
    assert np.isfinite(vectors).all()
