"""Multilingual text corpus for tokenizer and embedding parity tests.

The file holds one text per line; texts that cannot live on a line of a plain
UTF-8 file (empty, whitespace-only, line separators, control characters,
very long inputs) are kept here as escapes instead.
"""
from __future__ import annotations

from pathlib import Path

CORPUS_PATH = Path(__file__).parent / "data" / "corpus_multilingual.txt"

EDGE_CASES: list[str] = [
    "",
    " ",
    "   \t  ",
    "\n",
    "\r\n",
    "line one\nline two\r\nline three\rline four",
    "tab\tseparated\tcolumns\t",
    "\t\tindented with tabs",
    "\x00",
    "nul\x00inside",
    "bell\x07 backspace\x08 escape\x1b[31mred\x1b[0m",
    "vertical\x0btab and form\x0cfeed",
    "file\x1cgroup\x1drecord\x1eunit\x1fseparators",
    "delete\x7fchar",
    "C1 controls \x80\x85\x9f next-line\x85here",
    "line\u2028separator and paragraph\u2029separator",
    "\ufeffbyte order mark at the start",
    "zero\u200bwidth\u200cnon\u200djoiner",
    "\u0301 a combining mark with nothing before it",
    "\u0300\u0301\u0302\u0303\u0304",
    "e" + "\u0301" * 50,
    "a\u0315\u0300\u05ae\u0301b",  # canonical reordering of mixed combining classes
    "\ufffd replacement character",
    "\U0010ffff highest code point and \U000e0001 language tag",
    "\U0001f469\u200d\u2764\ufe0f\u200d\U0001f48b\u200d\U0001f468",
    "[CLS][SEP][MASK][PAD][UNK]",
    "[CLS]",
    "x[CLS]y",
    "[[[SEP]]]",
    "[CLS",
    "a" * 100,  # exactly max_input_chars_per_word: still split into pieces
    "a" * 101,  # one more: becomes [UNK]
    "é" * 100,
    "é" * 101,
    "e\u0301" * 100,  # 200 code points before accent stripping, 100 after
    "!" * 300,
    "word " * 1000,  # 5000 characters
    "x" * 5000,
    ("The quick brown fox jumps over the lazy dog. " * 112)[:5000],
    ("Съешь же ещё этих мягких французских булок. 东京 서울 " * 100)[:5000],
    " ".join(chr(c) for c in range(0x20, 0x7F)),
    "".join(chr(c) for c in range(0x80, 0x250)),
]


def load_corpus() -> list[str]:
    """Corpus lines (in file order) followed by EDGE_CASES."""
    # split("\n") rather than splitlines(): the latter would also break texts
    # at U+2028, U+0085 and friends, which are meant to be inside a text.
    lines = CORPUS_PATH.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines + list(EDGE_CASES)
