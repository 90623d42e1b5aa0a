// pybind11 surface of the runtime. Python-facing conveniences (model names,
// prompts, Matryoshka truncation) live in native/__init__.py; this file only
// converts types and releases the GIL around compute.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "charsmap.h"
#include "gguf.h"
#include "kernels/kernels.h"
#include "kernels/peak.h"
#include "model.h"

namespace py = pybind11;
using namespace embedq;

namespace {

// File text is untrusted: invalid UTF-8 is shown with U+FFFD, never raised.
py::str lenient_str(std::string_view s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), (Py_ssize_t)s.size(), "replace");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

py::object value_to_py(const GGUFValue& v) {
  switch (v.type) {
    case GGUFType::STRING: return lenient_str(v.s);
    case GGUFType::FLOAT32: case GGUFType::FLOAT64: return py::float_(v.f);
    case GGUFType::BOOL: return py::bool_(v.u != 0);
    case GGUFType::UINT64: case GGUFType::UINT32: case GGUFType::UINT16: case GGUFType::UINT8: return py::int_(v.u);
    case GGUFType::ARRAY: {
      py::list out;
      if (v.elem_type == GGUFType::STRING) {
        for (const auto& s : v.strings) out.append(lenient_str(s));
        return std::move(out);
      }
      // Numeric arrays are summarized by length: token scores can hold 262k entries.
      py::dict d;
      d["array_type"] = (int)v.elem_type;
      d["length"] = v.count;
      return std::move(d);
    }
    default: return py::int_(v.i);
  }
}

py::dict file_summary(const GGUFFile& f) {
  py::dict meta;
  for (const auto& kv : f.metadata()) meta[lenient_str(kv.first)] = value_to_py(kv.second);
  py::list tensors;
  for (const TensorView& t : f.tensors()) {
    py::dict d;
    d["name"] = lenient_str(t.name);
    d["type"] = dtype_name((uint32_t)t.type);
    py::list shape;
    for (int i = 0; i < t.n_dims; ++i) shape.append(t.ne[i]);
    d["shape"] = shape;
    d["offset"] = t.offset;
    d["nbytes"] = t.nbytes;
    tensors.append(d);
  }
  py::dict out;
  out["version"] = f.version();
  out["alignment"] = f.alignment();
  out["metadata"] = meta;
  out["tensors"] = tensors;
  return out;
}

// A vector handed to numpy without a copy: the array owns it through a capsule.
template <class T>
py::array to_numpy(std::vector<T>&& v, py::dtype dtype) {
  std::unique_ptr<std::vector<T>> owned(new std::vector<T>(std::move(v)));
  py::capsule free_when_done(owned.get(), [](void* p) { delete static_cast<std::vector<T>*>(p); });
  std::vector<T>* data = owned.release();
  return py::array(dtype, {(py::ssize_t)data->size()}, {(py::ssize_t)sizeof(T)}, data->data(), free_when_done);
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

const Kernels& kernels_named(const std::string& name) {
  const Kernels* k = kernels_by_name(name.c_str());
  if (!k) throw py::value_error("kernel set '" + name + "' is not available on this CPU");
  return *k;
}

using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "embedq native runtime";
  py::register_exception<GGUFError>(m, "GGUFError", PyExc_ValueError);

  m.def("inspect_gguf", [](const std::string& path) { return file_summary(*GGUFFile::open(path)); },
        py::arg("path"), "Parse a GGUF file and return its metadata and tensor table.");
  m.def("parse_gguf_bytes", [](py::bytes data) {
        std::string s = data;
        return file_summary(*GGUFFile::from_buffer(s.data(), s.size()));
      }, py::arg("data"), "Parse GGUF bytes held in memory (for tests and fuzzing).");

  m.def("kernel_sets", [] {
    size_t n = 0;
    const char* const* names = kernels_available(&n);
    std::vector<std::string> out(names, names + n);
    return out;
  }, "Kernel sets this CPU can run, best last.");
  m.def("best_kernels", [] { return std::string(kernels_best().name); });
  m.def("measure_peaks", [](int threads, double seconds) {
    std::vector<PeakRate> rates;
    {
      py::gil_scoped_release release;
      rates = measure_peaks(threads, seconds);
    }
    py::dict out;
    for (const PeakRate& r : rates) out[py::str(r.name)] = r.gops;
    return out;
  }, py::arg("threads"), py::arg("seconds") = 0.3,
     "This machine's peak GOP/s (multiply-add = 2) per instruction family the kernels use.");

  // The SentencePiece charsmap normalizer on its own, for tests that compare it
  // with HF's Precompiled normalizer character by character.
  m.def("charsmap_normalize", [](py::bytes blob, const std::string& text) {
    std::string out;
    try {
      CharsMap(std::string(blob)).normalize(text, out);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
    return out;
  }, py::arg("blob"), py::arg("text"));

  // Kernel entry points for tests that compare instruction sets on random data.
  m.def("gemm_f32_nt", [](const std::string& name, F32Array a, F32Array b) {
    if (a.ndim() != 2 || b.ndim() != 2 || a.shape(1) != b.shape(1)) throw py::value_error("gemm_f32_nt: shapes (m,k) and (n,k) expected");
    const Kernels& k = kernels_named(name);
    const size_t M = (size_t)a.shape(0), N = (size_t)b.shape(0), K = (size_t)a.shape(1);
    py::array_t<float> c({(py::ssize_t)M, (py::ssize_t)N});
    k.gemm_f32_nt(a.data(), K, b.data(), K, c.mutable_data(), N, M, N, K);
    return c;
  });
  m.def("quantize_q8_0", [](const std::string& name, F32Array x) {
    if (x.ndim() != 1 || x.shape(0) % QK8_0 != 0) throw py::value_error("quantize_q8_0: 1-D array, length a multiple of 32");
    const Kernels& k = kernels_named(name);
    const size_t n = (size_t)x.shape(0);
    py::array_t<uint8_t> out((py::ssize_t)(n / QK8_0 * sizeof(BlockQ8_0)));
    k.quantize_row_q8_0(x.data(), reinterpret_cast<BlockQ8_0*>(out.mutable_data()), n);
    return out;
  });
  // One row of any supported weight type, as the kernel set `name` converts it
  // to f32 (tests compare it with the gguf package's NumPy dequantizers).
  m.def("dequantize", [](const std::string& name, const std::string& type,
                         py::array_t<uint8_t, py::array::c_style> raw) {
    const Kernels& k = kernels_named(name);
    uint32_t id = 0;
    while (id < kDTypeSlots && !(dtype_supported(id) && type == dtype_name(id))) ++id;
    const DTypeInfo* info = id < kDTypeSlots ? dtype_info(id) : nullptr;
    if (!info) throw py::value_error("dequantize: type '" + type + "' is not one of " + dtype_supported_list());
    if (raw.ndim() != 1 || raw.shape(0) % info->block_bytes != 0)
      throw py::value_error("dequantize: a 1-D byte array of whole " + type + " blocks (" +
                            std::to_string(info->block_bytes) + " bytes each) expected");
    const size_t n = (size_t)raw.shape(0) / info->block_bytes * info->block_elems;
    py::array_t<float> out((py::ssize_t)n);
    // A copy: numpy gives no alignment promise, and the kernels read fp16 fields in place.
    std::vector<uint16_t> aligned(((size_t)raw.shape(0) + 1) / 2);
    if (raw.shape(0)) std::memcpy(aligned.data(), raw.data(), (size_t)raw.shape(0));
    k.row_to_f32[id](aligned.data(), out.mutable_data(), n);
    return out;
  }, py::arg("kernels"), py::arg("type"), py::arg("raw"));

  py::class_<Model>(m, "_Model")
      .def(py::init([](const std::string& path, int threads, const std::string& activations, int64_t max_tokens,
                       size_t batch_tokens, const std::string& kernels) {
             ModelOptions o;
             o.threads = threads;
             if (activations == "auto") o.activations = ActivationMode::AUTO;
             else if (activations == "f32") o.activations = ActivationMode::F32;
             else if (activations == "int8") o.activations = ActivationMode::INT8;
             else if (activations == "int16") o.activations = ActivationMode::INT16;
             else throw py::value_error("activations must be 'auto', 'f32', 'int8' or 'int16', got '" + activations + "'");
             o.max_tokens = max_tokens;
             if (batch_tokens < 1) throw py::value_error("batch_tokens must be positive");
             o.batch_tokens = batch_tokens;
             o.kernels = kernels;
             py::gil_scoped_release release;
             return new Model(path, o);
           }),
           py::arg("path"), py::arg("threads") = 0, py::arg("activations") = "auto", py::arg("max_tokens") = 0,
           py::arg("batch_tokens") = 8192, py::arg("kernels") = "")
      .def("tokenize", &Model::tokenize, py::arg("text"), "Ids with the model's special tokens, not truncated.")
      .def("tokenize_offsets", [](const Model& self, const std::string& text) -> py::object {
        std::vector<int32_t> ids;
        std::vector<TokenSpan> spans;
        bool ok = false;
        {
          py::gil_scoped_release release;
          ok = self.tokenize_spans(text, ids, spans);
        }
        if (!ok) return py::none();
        // Byte offsets become character offsets (Python indexes str by code point): the
        // character index of every byte position, counting lead bytes only.
        std::vector<int64_t> char_at(text.size() + 1, 0);
        int64_t c = 0;
        for (size_t i = 0; i < text.size(); ++i) {
          char_at[i] = c;
          if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++c;
        }
        char_at[text.size()] = c;
        // Spans begin and end on character boundaries, where this count is exact.
        std::vector<int64_t> starts(spans.size()), ends(spans.size());
        for (size_t i = 0; i < spans.size(); ++i) {
          starts[i] = char_at[spans[i].begin];
          ends[i] = char_at[spans[i].end];
        }
        return py::make_tuple(to_numpy(std::move(ids), py::dtype::of<int32_t>()),
                              to_numpy(std::move(starts), py::dtype::of<int64_t>()),
                              to_numpy(std::move(ends), py::dtype::of<int64_t>()));
      }, py::arg("text"),
         "(ids int32, char starts int64, char ends int64) without special tokens, or None where the "
         "tokenizer does not track offsets.")
      .def_property_readonly("leading_special", &Model::leading_special)
      .def_property_readonly("trailing_special", &Model::trailing_special)
      .def("encode_batch", [](const Model& self, const py::object& texts, const std::string& prefix) {
        if (PyUnicode_Check(texts.ptr())) throw py::type_error("texts must be a list of str, not a str");
        // The tuple keeps every str alive, and with it the UTF-8 buffer each
        // view points into, while the GIL is released.
        const py::tuple items(texts);
        std::vector<std::string_view> views;
        views.reserve(items.size());
        for (size_t i = 0; i < items.size(); ++i) {
          PyObject* o = items[i].ptr();
          if (!PyUnicode_Check(o)) {
            throw py::type_error("texts[" + std::to_string(i) + "] must be str, got " + Py_TYPE(o)->tp_name);
          }
          Py_ssize_t n = 0;
          const char* utf8 = PyUnicode_AsUTF8AndSize(o, &n);
          if (!utf8) throw py::error_already_set();
          views.emplace_back(utf8, (size_t)n);
        }
        EncodedBatch b;
        double ms = 0;
        {
          py::gil_scoped_release release;
          const auto t0 = std::chrono::steady_clock::now();
          b = self.encode_batch(views, prefix);
          ms = ms_since(t0);
        }
        return py::make_tuple(to_numpy(std::move(b.ids), py::dtype::of<int32_t>()),
                              to_numpy(std::move(b.lengths), py::dtype::of<int64_t>()),
                              to_numpy(std::move(b.truncated), py::dtype::of<bool>()), ms);
      }, py::arg("texts"), py::arg("prefix") = "",
         "(ids int32, lengths int64, truncated bool, tokenize_ms) for prefix + text of every text.")
      .def("embed_ids", [](Model& self, const py::object& ids_in, const py::object& lengths_in, bool normalize) {
        // Safe casts only: an int64 id is refused, never wrapped into range.
        auto ids = py::array_t<int32_t, py::array::c_style>::ensure(ids_in);
        auto lengths = py::array_t<int64_t, py::array::c_style>::ensure(lengths_in);
        if (!ids || !lengths) throw py::type_error("ids must be an int32 array and lengths an int64 array");
        if (ids.ndim() != 1 || lengths.ndim() != 1) throw py::value_error("ids and lengths must be 1-D arrays");
        const size_t n = (size_t)lengths.shape(0), n_ids = (size_t)ids.shape(0);
        // Checked here, with the GIL held, so a bad batch is refused (std::invalid_argument ->
        // ValueError) before any compute; embed_ids checks again for its C++ callers.
        self.check_ids(ids.data(), n_ids, lengths.data(), n);
        py::array_t<float> out({(py::ssize_t)n, (py::ssize_t)self.dim()});
        float* dst = out.mutable_data();
        double ms = 0;
        {
          py::gil_scoped_release release;
          const auto t0 = std::chrono::steady_clock::now();
          self.embed_ids(ids.data(), n_ids, lengths.data(), n, normalize, dst);
          ms = ms_since(t0);
        }
        py::dict stats;
        stats["forward_ms"] = ms;
        stats["tokens"] = (int64_t)n_ids;
        return py::make_tuple(out, stats);
      }, py::arg("ids"), py::arg("lengths"), py::arg("normalize") = true,
         "(vectors float32 (n, dim), {forward_ms, tokens}) for n packed sequences; ids and lengths are checked first.")
      .def("op_times", [](Model& self) {
        OpTimes t;
        {
          py::gil_scoped_release release;  // waits for a forward pass in flight
          t = self.op_times();
        }
        py::dict d;
        d["linear_ms"] = t.linear_ms;
        d["linear_ops"] = t.linear_ops;
        d["attention_ms"] = t.attention_ms;
        return d;
      }, "Forward-pass time in linear layers and attention (ms) and the linear layers' operations, summed.")
      .def("reset_op_times", [](Model& self) {
        py::gil_scoped_release release;
        self.reset_op_times();
      })
      .def_property_readonly("texts_tokenized", &Model::texts_tokenized,
                             "Texts passed through the tokenizer since the model was loaded.")
      .def_property_readonly("dim", &Model::dim)
      .def_property_readonly("max_tokens", &Model::max_tokens)
      .def_property_readonly("threads", &Model::threads)
      .def_property_readonly("kernels", [](const Model& self) { return std::string(self.kernels_name()); })
      .def_property_readonly("prompts", &Model::prompts)
      .def_property_readonly("dims_allowed", &Model::dims_allowed)
      .def_property_readonly("vocab_size", &Model::vocab_size)
      .def_property_readonly("info", &Model::info);
}
