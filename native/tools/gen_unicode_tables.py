#!/usr/bin/env python3
"""Generate native/csrc/unicode_tables.inc from Python's unicodedata.

    python native/tools/gen_unicode_tables.py            # rewrite the .inc
    python native/tools/gen_unicode_tables.py --check-hf # also prove the tables
                                                         # match HF `tokenizers`

The C++ WordPiece tokenizer must reproduce HF `tokenizers` bit for bit, and
HF does not use one Unicode version: its Rust code takes general categories
(control/format, punctuation, non-spacing marks) from the `unicode_categories`
crate (Unicode 8.0), canonical decomposition and combining classes from
`unicode-normalization-alignments` (Unicode 9.0), and lowercase/white space
from the Rust standard library (Unicode 16.0 in tokenizers 0.23).  Python 3.11
ships Unicode 14.0.  So the tables start from unicodedata and then pin the
code points whose properties differ between those versions; the lists below
were obtained by probing every code point through tokenizers 0.23.3, and
`--check-hf` re-runs that probe against the generated tables, so a newer
`tokenizers` that changes its snapshots is caught instead of silently drifting.
"""
from __future__ import annotations

import argparse
import bisect
import sys
import unicodedata
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "csrc" / "unicode_tables.inc"

MAX_CP = 0x10FFFF

# Flag bits, mirrored by unicode.h.
F_CONTROL = 0x01  # removed by BertNormalizer clean_text
F_WHITESPACE = 0x02  # White_Space property
F_PUNCT = 0x04  # BertPreTokenizer isolates it
F_MARK = 0x08  # non-spacing mark, dropped by strip_accents
F_CJK = 0x10  # handle_chinese_chars pads it with spaces
F_DECOMPOSES = 0x20  # has a canonical decomposition
F_HAS_LOWER = 0x40  # lowercase mapping differs from the character

# --- HF version-skew pins (see module docstring) ---------------------------

# General categories from Unicode 8.0: punctuation added in later versions is
# not punctuation to HF, and two characters were recategorised since 8.0.
PUNCT_NOT_IN_8 = [
    (0x061D, 0x061D), (0x09FD, 0x09FD), (0x0A76, 0x0A76), (0x0C77, 0x0C77), (0x0C84, 0x0C84),
    (0x1B7D, 0x1B7E), (0x2E43, 0x2E4F), (0x2E52, 0x2E5D), (0x10EAD, 0x10EAD), (0x10F55, 0x10F59),
    (0x10F86, 0x10F89), (0x1144B, 0x1144F), (0x1145A, 0x1145B), (0x1145D, 0x1145D), (0x11660, 0x1166C),
    (0x116B9, 0x116B9), (0x1183B, 0x1183B), (0x11944, 0x11946), (0x119E2, 0x119E2), (0x11A3F, 0x11A46),
    (0x11A9A, 0x11A9C), (0x11A9E, 0x11AA2), (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11EF7, 0x11EF8),
    (0x11FFF, 0x11FFF), (0x12FF1, 0x12FF2), (0x16E97, 0x16E9A), (0x16FE2, 0x16FE2), (0x1E95E, 0x1E95F),
]
PUNCT_ONLY_IN_8 = [(0x166D, 0x166D), (0x111C9, 0x111C9)]
FORMAT_NOT_IN_8 = [(0x0890, 0x0891), (0x08E2, 0x08E2), (0x110CD, 0x110CD), (0x13430, 0x13438)]
MARK_NOT_IN_8 = [
    (0x07FD, 0x07FD), (0x0898, 0x089F), (0x08CA, 0x08E1), (0x09FE, 0x09FE), (0x0AFA, 0x0AFF),
    (0x0B55, 0x0B55), (0x0C04, 0x0C04), (0x0C3C, 0x0C3C), (0x0D00, 0x0D00), (0x0D3B, 0x0D3C),
    (0x0D81, 0x0D81), (0x0EBA, 0x0EBA), (0x180F, 0x180F), (0x1885, 0x1886), (0x1ABF, 0x1ACE),
    (0x1DF6, 0x1DFB), (0xA82C, 0xA82C), (0xA8C5, 0xA8C5), (0xA8FF, 0xA8FF), (0xA9BD, 0xA9BD),
    (0x10D24, 0x10D27), (0x10EAB, 0x10EAC), (0x10F46, 0x10F50), (0x10F82, 0x10F85), (0x11070, 0x11070),
    (0x11073, 0x11074), (0x110C2, 0x110C2), (0x111C9, 0x111C9), (0x111CF, 0x111CF), (0x1123E, 0x1123E),
    (0x1133B, 0x1133B), (0x11438, 0x1143F), (0x11442, 0x11444), (0x11446, 0x11446), (0x1145E, 0x1145E),
    (0x1182F, 0x11837), (0x11839, 0x1183A), (0x1193B, 0x1193C), (0x1193E, 0x1193E), (0x11943, 0x11943),
    (0x119D4, 0x119D7), (0x119DA, 0x119DB), (0x119E0, 0x119E0), (0x11A01, 0x11A0A), (0x11A33, 0x11A38),
    (0x11A3B, 0x11A3E), (0x11A47, 0x11A47), (0x11A51, 0x11A56), (0x11A59, 0x11A5B), (0x11A8A, 0x11A96),
    (0x11A98, 0x11A99), (0x11C30, 0x11C36), (0x11C38, 0x11C3D), (0x11C3F, 0x11C3F), (0x11C92, 0x11CA7),
    (0x11CAA, 0x11CB0), (0x11CB2, 0x11CB3), (0x11CB5, 0x11CB6), (0x11D31, 0x11D36), (0x11D3A, 0x11D3A),
    (0x11D3C, 0x11D3D), (0x11D3F, 0x11D45), (0x11D47, 0x11D47), (0x11D90, 0x11D91), (0x11D95, 0x11D95),
    (0x11D97, 0x11D97), (0x11EF3, 0x11EF4), (0x16F4F, 0x16F4F), (0x16FE4, 0x16FE4), (0x1CF00, 0x1CF2D),
    (0x1CF30, 0x1CF46), (0x1E000, 0x1E006), (0x1E008, 0x1E018), (0x1E01B, 0x1E021), (0x1E023, 0x1E024),
    (0x1E026, 0x1E02A), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF), (0x1E944, 0x1E94A),
]
MARK_ONLY_IN_8 = [(0x1734, 0x1734)]

# Normalization from Unicode 9.0: combining marks encoded after 9.0 are
# starters (class 0) to HF, and U+11938 (Unicode 13) does not decompose.
CCC_ZERO_IN_9 = [
    (0x07FD, 0x07FD), (0x0898, 0x089F), (0x08CA, 0x08D3), (0x09FE, 0x09FE), (0x0C3C, 0x0C3C),
    (0x0D3B, 0x0D3C), (0x0EBA, 0x0EBA), (0x1715, 0x1715), (0x1ABF, 0x1ACE), (0x1DF6, 0x1DFA),
    (0xA82C, 0xA82C), (0x10D24, 0x10D27), (0x10EAB, 0x10EAC), (0x10F46, 0x10F50), (0x10F82, 0x10F85),
    (0x11070, 0x11070), (0x1133B, 0x1133B), (0x1145E, 0x1145E), (0x11839, 0x1183A), (0x1193D, 0x1193E),
    (0x11943, 0x11943), (0x119E0, 0x119E0), (0x11A34, 0x11A34), (0x11A47, 0x11A47), (0x11A99, 0x11A99),
    (0x11D42, 0x11D42), (0x11D44, 0x11D45), (0x11D97, 0x11D97), (0x16FF0, 0x16FF1), (0x1E130, 0x1E136),
    (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF),
]
NO_DECOMPOSITION_IN_9 = [0x11938]

# Lowercase mappings of letters encoded in Unicode 15.1/16.0 (Rust std knows
# them, Python 3.11 does not): (first, last, delta).
LOWER_SINCE_15 = [
    (0x1C89, 0x1C89, 1), (0xA7CB, 0xA7CB, 0x0264 - 0xA7CB), (0xA7CC, 0xA7CC, 1), (0xA7CE, 0xA7CE, 1),
    (0xA7D2, 0xA7D2, 1), (0xA7D4, 0xA7D4, 1), (0xA7DA, 0xA7DA, 1), (0xA7DC, 0xA7DC, 0x019B - 0xA7DC),
    (0x10D50, 0x10D65, 0x20), (0x16EA0, 0x16EB8, 0x1B),
]

# Not Unicode data: the fixed block list HF's BertNormalizer pads (it follows
# Google's original BERT, including its 0x2B920 typo for 0x2B820).
CJK_RANGES = [
    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0x2F800, 0x2FA1F),
]

ASCII_PUNCT = set(b'!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~')


def expand(ranges):
    out = set()
    for a, b in ranges:
        out.update(range(a, b + 1))
    return out


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


class Model:
    """Per-code-point properties exactly as HF sees them."""

    def __init__(self):
        punct_not8, punct_only8 = expand(PUNCT_NOT_IN_8), expand(PUNCT_ONLY_IN_8)
        format_not8 = expand(FORMAT_NOT_IN_8)
        mark_not8, mark_only8 = expand(MARK_NOT_IN_8), expand(MARK_ONLY_IN_8)
        ccc_zero9 = expand(CCC_ZERO_IN_9)
        cjk = expand(CJK_RANGES)
        self.flags = [0] * (MAX_CP + 1)
        self.ccc = [0] * (MAX_CP + 1)
        self.decomp: dict[int, list[int]] = {}
        self.lower: dict[int, list[int]] = {}
        for cp in range(MAX_CP + 1):
            if is_surrogate(cp):
                continue
            ch = chr(cp)
            cat = unicodedata.category(ch)
            f = 0
            # clean_text drops Cc (but \t \n \r, which count as white space),
            # format and private-use characters, NUL and U+FFFD; unassigned
            # code points survive.
            if cp in (0, 0xFFFD) or (cat == "Cc" and cp not in (9, 10, 13)) or cat == "Co" or (
                cat == "Cf" and cp not in format_not8
            ):
                f |= F_CONTROL
            # White_Space is exactly Zs/Zl/Zp plus these C0/C1 controls.
            if cat in ("Zs", "Zl", "Zp") or cp in (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85):
                f |= F_WHITESPACE
            if cp in ASCII_PUNCT or (cat.startswith("P") and cp not in punct_not8) or cp in punct_only8:
                f |= F_PUNCT
            if (cat == "Mn" and cp not in mark_not8) or cp in mark_only8:
                f |= F_MARK
            if cp in cjk:
                f |= F_CJK
            nfd = unicodedata.normalize("NFD", ch)
            if nfd != ch and cp not in NO_DECOMPOSITION_IN_9:
                f |= F_DECOMPOSES
                if not 0xAC00 <= cp <= 0xD7A3:  # Hangul is algorithmic in C++
                    self.decomp[cp] = [ord(c) for c in nfd]
            low = ch.lower()
            if low != ch:
                f |= F_HAS_LOWER
                self.lower[cp] = [ord(c) for c in low]
            self.flags[cp] = f
            if cp not in ccc_zero9:
                self.ccc[cp] = unicodedata.combining(ch)
        for a, b, delta in LOWER_SINCE_15:
            for cp in range(a, b + 1):
                assert cp not in self.lower, hex(cp)
                self.flags[cp] |= F_HAS_LOWER
                self.lower[cp] = [cp + delta]

    # Python reference of the C++ normalization steps, used by --check-hf.
    def nfd(self, s: str) -> str:
        out = []
        for ch in s:
            cp = ord(ch)
            if cp in self.decomp:
                out.extend(self.decomp[cp])
            elif 0xAC00 <= cp <= 0xD7A3:
                out.extend(ord(c) for c in unicodedata.normalize("NFD", ch))
            else:
                out.append(cp)
        i = 0
        while i < len(out):  # stable sort of each run of non-starters
            if self.ccc[out[i]] == 0:
                i += 1
                continue
            j = i
            while j < len(out) and self.ccc[out[j]] != 0:
                j += 1
            out[i:j] = sorted(out[i:j], key=lambda c: self.ccc[c])
            i = j
        return "".join(map(chr, out))

    def to_lower(self, s: str) -> str:
        return "".join("".join(map(chr, self.lower.get(ord(c), [ord(c)]))) for c in s)


def runs(model: Model):
    """Maximal runs of code points sharing (flags, ccc); each starts a run."""
    out = []
    prev = None
    for cp in range(MAX_CP + 1):
        key = (model.flags[cp], model.ccc[cp])
        if key != prev:
            out.append((cp,) + key)
            prev = key
    return out


def lower_runs(model: Model):
    """Compress single-code-point lowercase mappings into (first, last, stride, delta)."""
    simple = sorted((cp, m[0] - cp) for cp, m in model.lower.items() if len(m) == 1)
    out = []
    for cp, delta in simple:
        if out:
            first, last, stride, d = out[-1]
            if d == delta and ((stride == 0 and cp - last in (1, 2)) or (stride and cp - last == stride)):
                out[-1] = (first, cp, cp - last if stride == 0 else stride, d)
                continue
        out.append((cp, cp, 0, delta))
    return [(a, b, s or 1, d) for a, b, s, d in out]


def render(model: Model) -> str:
    rs = runs(model)
    assert len(rs) < 0xFFFF
    starts = [r[0] for r in rs]
    # For each 256-code-point block, the run holding its first code point, so a
    # lookup binary-searches a handful of runs instead of all of them.
    nblocks = (MAX_CP + 1) >> 8
    block_run = [bisect.bisect_right(starts, b << 8) - 1 for b in range(nblocks)] + [len(rs) - 1]
    decomp_keys = sorted(model.decomp)
    data, index = [], []
    for cp in decomp_keys:
        seq = model.decomp[cp]
        index.append((cp, len(data), len(seq)))
        data.extend(seq)
    assert len(data) < 0x10000
    max_decomp = max(len(model.decomp[c]) for c in decomp_keys)
    multi = sorted((cp, m) for cp, m in model.lower.items() if len(m) > 1)
    assert all(len(m) <= 3 for _, m in multi)
    lr = lower_runs(model)

    def rows(items, per_line):
        lines = []
        for i in range(0, len(items), per_line):
            lines.append("    " + " ".join(items[i : i + per_line]))
        return "\n".join(lines)

    o = []
    o.append("// Generated by native/tools/gen_unicode_tables.py -- do not edit by hand.")
    o.append(f"// Source: Python {sys.version_info[0]}.{sys.version_info[1]} unicodedata, Unicode {unicodedata.unidata_version}, with the")
    o.append("// code points pinned to the snapshots HF `tokenizers` uses (categories: Unicode 8.0,")
    o.append("// normalization: Unicode 9.0, lowercase: Unicode 16.0); see the generator.")
    o.append("// Included by unicode.cpp inside namespace embedq::unicode::tables.")
    o.append("")
    o.append(f'constexpr char kUnicodeVersion[] = "{unicodedata.unidata_version}";')
    o.append(f"constexpr size_t kMaxDecompositionLength = {max_decomp};")
    o.append("")
    o.append("// Run i covers [kRuns[i].first, kRuns[i + 1].first); the last run ends at U+10FFFF.")
    o.append(f"constexpr PropRun kRuns[{len(rs)}] = {{")
    o.append(rows([f"{{0x{a:X}, 0x{f:02X}, {c}}}," for a, f, c in rs], 6))
    o.append("};")
    o.append("")
    o.append(f"constexpr uint16_t kBlockRun[{len(block_run)}] = {{")
    o.append(rows([f"{x}," for x in block_run], 16))
    o.append("};")
    o.append("")
    o.append("// Full canonical decompositions (already recursive), Hangul syllables excluded.")
    o.append(f"constexpr DecompEntry kDecomp[{len(index)}] = {{")
    o.append(rows([f"{{0x{cp:X}, {off}, {n}}}," for cp, off, n in index], 6))
    o.append("};")
    o.append(f"constexpr char32_t kDecompData[{len(data)}] = {{")
    o.append(rows([f"0x{x:X}," for x in data], 10))
    o.append("};")
    o.append("")
    o.append("// Lowercase: cp in [first, last] with (cp - first) % stride == 0 maps to cp + delta.")
    o.append(f"constexpr LowerRun kLower[{len(lr)}] = {{")
    o.append(rows([f"{{0x{a:X}, 0x{b:X}, {s}, {d}}}," for a, b, s, d in lr], 4))
    o.append("};")
    o.append("// Lowercase mappings that expand to several code points.")
    o.append(f"constexpr LowerMulti kLowerMulti[{len(multi)}] = {{")
    o.append(
        rows(
            [f"{{0x{cp:X}, {len(m)}, {{{', '.join(f'0x{x:X}' for x in m + [0] * (3 - len(m)))}}}}}," for cp, m in multi], 2
        )
    )
    o.append("};")
    o.append("")
    return "\n".join(o)


def check_hf(model: Model) -> int:
    """Probe every code point through HF's components; return the mismatch count."""
    from tokenizers.normalizers import NFD, BertNormalizer, Lowercase
    from tokenizers.pre_tokenizers import BertPreTokenizer

    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety, not a requirement
        def tqdm(x, **_):
            return x

    clean = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    chinese = BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    strip = BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    lower = Lowercase()
    nfd = NFD()
    pre = BertPreTokenizer()
    # Old marks (present in Unicode 1.1-5.0) whose classes span the range.
    refs = ["\u0334", "\u0316", "\u0301", "\u0345", "\u05b0", "\u0e48"]
    bad = 0

    def report(cp, what, got, want):
        nonlocal bad
        bad += 1
        if bad <= 20:
            print(f"U+{cp:04X} {what}: HF {got!r}, tables {want!r}")

    for cp in tqdm(range(MAX_CP + 1), desc="check-hf", unit="cp", mininterval=2):
        if is_surrogate(cp):
            continue
        ch = chr(cp)
        f = model.flags[cp]
        want = "ab" if f & F_CONTROL else ("a b" if f & F_WHITESPACE else "a" + ch + "b")
        got = clean.normalize_str("a" + ch + "b")
        if got != want:
            report(cp, "clean_text", got, want)
        want = f" {ch} " if f & F_CJK else ch
        got = chinese.normalize_str(ch)
        if got != want:
            report(cp, "chinese", got, want)
        want = "".join(c for c in model.nfd(ch) if not model.flags[ord(c)] & F_MARK)
        got = strip.normalize_str(ch)
        if got != want:
            report(cp, "strip_accents", got, want)
        got, want = lower.normalize_str(ch), model.to_lower(ch)
        if got != want:
            report(cp, "lowercase", got, want)
        got = [t for t, _ in pre.pre_tokenize_str("a" + ch + "b")]
        want = ["a", "b"] if f & F_WHITESPACE else (["a", ch, "b"] if f & F_PUNCT else ["a" + ch + "b"])
        if got != want:
            report(cp, "pre_tokenize", got, want)
        for r in refs:
            for s in ("a" + r + ch, "a" + ch + r):
                got, want = nfd.normalize_str(s), model.nfd(s)
                if got != want:
                    report(cp, f"canonical order with U+{ord(r):04X}", got, want)
    print(f"check-hf: {bad} mismatches")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check-hf", action="store_true", help="verify the tables against the installed tokenizers")
    args = ap.parse_args()
    if unicodedata.unidata_version != "14.0.0":
        # The pin lists above are relative to 14.0; another version would need them re-derived.
        print(f"need Python with Unicode 14.0.0 (Python 3.11), have {unicodedata.unidata_version}", file=sys.stderr)
        return 2
    model = Model()
    args.out.write_text(render(model))
    print(f"wrote {args.out}")
    if args.check_hf:
        return 1 if check_hf(model) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
