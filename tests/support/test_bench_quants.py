"""`embedq bench quants`: the table it writes and the recipes it accepts (the measurement
itself runs llama.cpp and is exercised by tests/runtime/test_quant_types.py)."""
from __future__ import annotations

import argparse

from bench import quants


def row(recipe, speed=True, llama=True, maker="llama.cpp"):
    def engine(base, version=None):
        e = {"min_cos": base, "median_cos": base + 0.01, "under_0999": 7, "texts": 383}
        if version:
            e.update(version=version, failed=1)
        e["speed"] = {"b32": 250.0, "b1": 90.25, "rss": 61.4} if speed else None
        return e

    r = {"recipe": recipe, "maker": maker, "mb": 21.27, "types": "Q5_0 28, Q4_K 4", "embedq": engine(0.96163)}
    if llama:
        r["llama.cpp"] = engine(0.52726, "0.3.36")
    return r


def test_render_has_one_line_per_engine_and_the_reproduce_line():
    md = quants.render("all-MiniLM-L6-v2", [row("Q4_K_M"), row("Q4_K_M", maker="embedq"),
                                            row("Q6_K", speed=False, llama=False)], 2, 383, 128, 3,
                       "Reproduce: `embedq bench quants`")
    lines = md.splitlines()
    q = "| Q4_K_M | llama.cpp's quantizer | 21.3 |"
    assert f"{q} embedq | 0.96163 | 0.971630 | 7 | 250.0 | 90.2 | 61 |" in lines
    assert f"{q} llama.cpp 0.3.36 | 0.52726 | 0.537260 | 7 (1 failed) | 250.0 | 90.2 | 61 |" in lines
    ours = "| Q4_K_M | embedq convert | 21.3 |"
    assert f"{ours} embedq | 0.96163 | 0.971630 | 7 | 250.0 | 90.2 | 61 |" in lines
    assert f"{ours} llama.cpp 0.3.36 | 0.52726 | 0.537260 | 7 (1 failed) | 250.0 | 90.2 | 61 |" in lines
    assert "| Q6_K | llama.cpp's quantizer | 21.3 | embedq | 0.96163 | 0.971630 | 7 | - | - | - |" in lines
    assert "best of 3 rounds" in md
    assert not any(line.startswith("| Q6_K |") and "llama.cpp 0" in line for line in lines)
    assert "Q4_K_M (llama.cpp): Q5_0 28, Q4_K 4" in md and "Q4_K_M (ours): Q5_0 28, Q4_K 4" in md
    assert lines[-1] == "Reproduce: `embedq bench quants`"
    # The WordPiece remark is about MiniLM's tokenizer only.
    assert "WordPiece" in md
    gemma = quants.render("embeddinggemma-300m", [row("Q6_K")], 2, 383, 128, 1, "Reproduce: `embedq bench quants`")
    assert "WordPiece" not in gemma


def test_unknown_recipe_is_refused(capsys):
    p = argparse.ArgumentParser()
    quants.add_arguments(p)
    assert quants.run(p.parse_args(["--recipes", "q4_k_m,IQ2_XXS"])) == 2
    assert "IQ2_XXS" in capsys.readouterr().err


def test_best_speed_takes_each_batch_size_from_the_fastest_round():
    got = quants.best_speed([{"b32": 10.0, "b1": 5.0, "rss": 70.0}, None, {"b32": 8.0, "b1": 7.5, "rss": 64.0}])
    assert got == {"b32": 10.0, "b1": 7.5, "rss": 64.0}
    assert quants.best_speed([None, None]) is None
