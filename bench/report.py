"""Writing benchmark results into BENCHMARKS.md: one helper for every benchmark.

Each benchmark owns sections of the markdown file, one per key, between markers unique to
that key::

    <!-- embedq-bench:KEY:start -->
    ### Title
    ... tables, the plot's image link, "Reproduce: `embedq bench ...`" ...
    <!-- embedq-bench:KEY:end -->

`replace_section` swaps the text between a key's markers for a new body (everything the
benchmark writes, image links included, lives inside its markers), so a rerun replaces its
section in place and never adds a second copy; a key not yet in the file gets a new section at
the end. Plots go to `docs/` next to the markdown file under stable names (`plot_path`) and are
overwritten on rerun.
"""
from __future__ import annotations

import os
import platform
import re
import shlex
from pathlib import Path

PREFIX = "embedq-bench"
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_IMAGE = re.compile(r"^\s*!\[[^\]]*\]\(([^)\s]+)[^)]*\)\s*$")


def markers(key: str) -> tuple[str, str]:
    """The start and end markers of section `key`."""
    if not _KEY.match(key):
        raise ValueError(f"section key {key!r}: letters, digits, '.', '_' and '-' only")
    return f"<!-- {PREFIX}:{key}:start -->", f"<!-- {PREFIX}:{key}:end -->"


def replace_section(path: str | os.PathLike, key: str, body: str, title: str = "# Benchmarks") -> None:
    """Put `body` between the markers of section `key` in the markdown file at `path`.

    The section is replaced in place when the file has it, appended at the end otherwise (a
    missing file starts with `title`). Text outside the markers is kept, except a stray copy of
    one of the body's image links right after the section (left by older versions that wrote
    the image outside the markers), which is dropped so that each image appears once.
    """
    path = Path(path)
    start, end = markers(key)
    if start in body or end in body:
        raise ValueError("the body must not contain the section markers")
    text = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n"
    block = f"{start}\n{body.strip(chr(10))}\n{end}"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i >= 0 and j >= 0:
        if text.count(start) > 1 or text.count(end) > 1:
            raise ValueError(f"{path}: section {key!r} appears more than once; fix the file by hand")
        before, after = text[:i], text[j + len(end):]
        after = _drop_stray_images(after, _image_targets(body))
        text = before + block + after
    elif i >= 0 or end in text:
        raise ValueError(f"{path}: section {key!r} has only one of its two markers; fix the file by hand")
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    if not text.endswith("\n"):
        text += "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_section(path: str | os.PathLike, key: str) -> str | None:
    """The body of section `key` (without markers), or None when the file or the section is missing."""
    path = Path(path)
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    start, end = markers(key)
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i < 0 or j < 0:
        return None
    return text[i + len(start):j].strip("\n")


def _image_targets(body: str) -> set[str]:
    return {m.group(1) for line in body.splitlines() if (m := _IMAGE.match(line))}


def _drop_stray_images(after: str, targets: set[str]) -> str:
    """Remove, from the text following a section, the blank lines and image lines that repeat one
    of the section's images, up to the first other content."""
    if not targets:
        return after
    lines = after.split("\n")
    k = 1  # lines[0] is the rest of the end-marker line (normally empty)
    dropped = False
    while k < len(lines):
        m = _IMAGE.match(lines[k])
        if m and m.group(1) in targets:
            del lines[k]
            dropped = True
        elif not lines[k].strip():
            k += 1
        else:
            break
    if not dropped:
        return after
    # Collapse the blank run the removal left behind to one blank line.
    rest = "\n".join(lines[1:]).lstrip("\n")
    return lines[0] + ("\n\n" + rest if rest else "\n")


def plot_path(markdown: str | os.PathLike, name: str) -> tuple[Path, str]:
    """Where a benchmark's plot goes (`docs/NAME` next to the markdown file, folder created) and
    the link to write in the markdown; the same name on every run, so a rerun overwrites it."""
    if "/" in name or not name.endswith(".png"):
        raise ValueError(f"plot name {name!r}: a file name ending in .png")
    png = Path(markdown).resolve().parent / "docs" / name
    png.parent.mkdir(parents=True, exist_ok=True)
    return png, f"docs/{name}"


def reproduce(subcommand: str, options: list[tuple[str, object]]) -> str:
    """'Reproduce: `embedq bench SUBCOMMAND --opt value ...`' (options with None are left out,
    True is a bare flag)."""
    parts = ["embedq", "bench", subcommand]
    for opt, value in options:
        if value is None or value is False:
            continue
        parts.append(opt)
        if value is not True:
            parts.append(str(value))
    return f"Reproduce: `{shlex.join(parts)}`"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
