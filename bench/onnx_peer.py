"""ONNX Runtime as a peer (what fastembed and infinity run on CPUs): a sentence-transformers folder
exported whole (transformer, pooling, any Dense layers, normalization) to ONNX with torch.onnx, run
by onnxruntime at FP32 and after its dynamic int8 quantization, with a fixed number of intra-op
threads. Exports are cached under EMBEDQ_HOME/onnx, keyed by the folder's weights."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np


def _key(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".safetensors", ".json", ".model", ".txt"):
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def export(folder: str | os.PathLike, kind: str = "fp32", home: Path | None = None) -> Path:
    """The ONNX file of a sentence-transformers folder: kind "fp32", or "int8" (onnxruntime's dynamic
    quantization of the fp32 export: int8 weights of MatMuls, activations quantized per call). Each
    kind is a folder (the graph and its external weights) written aside and renamed into place."""
    from schemas.home import embedq_home

    if kind not in ("fp32", "int8"):
        raise ValueError(f"ONNX kind must be fp32 or int8, got {kind!r}")
    folder = Path(folder)
    root = (home or embedq_home()) / "onnx" / f"{folder.name}-{_key(folder)}"
    target = root / kind / "model.onnx"
    if target.is_file():
        return target
    source = export(folder, "fp32", home) if kind == "int8" else None
    work = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=_mkdir(root)))
    try:
        if source is None:
            _export_fp32(folder, work / "model.onnx")
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(source), str(work / "model.onnx"), weight_type=QuantType.QInt8,
                             use_external_data_format=True)
        os.replace(work, root / kind)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _export_fp32(folder: Path, out: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu").eval()

    class Whole(torch.nn.Module):  # ids and mask in, the sentence embedding out
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask):
            return self.st({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    enc = st.tokenizer(["a first text", "and a second, longer one"], padding=True, return_tensors="pt")
    # The dynamo exporter: tracing (dynamo=False) fails inside transformers' mask builders for Gemma 3.
    batch, seq = torch.export.Dim("batch", max=4096), torch.export.Dim("seq", max=8192)
    with torch.no_grad():
        torch.onnx.export(Whole(), (enc["input_ids"], enc["attention_mask"]), str(out), dynamo=True,
                          input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                          dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}), external_data=True)


class OnnxEncoder:
    """Texts in, normalized vectors out: the folder's own tokenizer (padding, truncation at its
    max_seq_length), then one onnxruntime session with `threads` intra-op threads."""

    def __init__(self, folder: str | os.PathLike, kind: str = "fp32", threads: int = 2):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        folder = Path(folder)
        self.path = export(folder, kind)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        # sentence-transformers' own limit, read from its config rather than by loading the whole model
        # (weights included) into the process being measured.
        cfg = folder / "sentence_bert_config.json"
        limit = json.loads(cfg.read_text()).get("max_seq_length") if cfg.is_file() else None
        self.max_len = int(limit or self.tokenizer.model_max_length)

    def embed(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="np")
        (v,) = self.session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                       "attention_mask": enc["attention_mask"].astype(np.int64)})
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def engine(model: str, threads: int, opts: dict):
    """bench/runtime.py's engine interface: (run(batch) -> vectors, meta)."""
    import onnxruntime as ort

    enc = OnnxEncoder(opts["hf_dir"], opts.get("onnx", "fp32"), threads=threads)
    return enc.embed, {"onnxruntime": ort.__version__, "onnx": opts.get("onnx", "fp32")}
