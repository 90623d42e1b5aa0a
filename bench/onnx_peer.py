"""ONNX Runtime as a peer (what fastembed and infinity run on CPUs): a sentence-transformers folder
exported whole (transformer, pooling, any Dense layers, normalization) to ONNX with torch.onnx, run
by onnxruntime at FP32 and after its dynamic int8 quantization, with a fixed number of intra-op
threads. Exports are cached under EMBEDQ_HOME/onnx, keyed by the folder's weights."""
from __future__ import annotations

import hashlib
import os
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
    quantization of the fp32 export: int8 weights of MatMuls, activations quantized per call)."""
    from schemas.home import embedq_home

    folder = Path(folder)
    out_dir = (home or embedq_home()) / "onnx" / f"{folder.name}-{_key(folder)}"
    fp32 = out_dir / "model-fp32.onnx"
    if not fp32.is_file():
        _export_fp32(folder, fp32)
    if kind == "fp32":
        return fp32
    if kind != "int8":
        raise ValueError(f"ONNX kind must be fp32 or int8, got {kind!r}")
    int8 = out_dir / "model-int8.onnx"
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8.with_suffix(".part.onnx")
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
        os.replace(tmp, int8)
    return int8


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.onnx")
    with torch.no_grad():
        torch.onnx.export(Whole(), (enc["input_ids"], enc["attention_mask"]), str(tmp), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "embedding": {0: "batch"}}, opset_version=17)
    os.replace(tmp, out)


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
        from sentence_transformers import SentenceTransformer

        self.max_len = SentenceTransformer(str(folder), device="cpu").max_seq_length

    def embed(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="np")
        (v,) = self.session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                       "attention_mask": enc["attention_mask"].astype(np.int64)})
        return v / np.linalg.norm(v, axis=1, keepdims=True)
