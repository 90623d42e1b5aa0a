// pybind11 surface of the runtime. Python-facing conveniences (model names,
// prompts, Matryoshka truncation) live in native/__init__.py; this file only
// converts types and releases the GIL around compute.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "gguf.h"
#include "kernels/kernels.h"
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

std::vector<std::string> to_strings(const py::list& texts) {
  std::vector<std::string> v;
  v.reserve(texts.size());
  for (const auto& t : texts) {
    if (!py::isinstance<py::str>(t)) throw py::type_error("texts must be str, got " + std::string(py::str(py::type::of(t).attr("__name__"))));
    v.push_back(t.cast<std::string>());
  }
  return v;
}

py::dict stats_dict(const EmbedStats& s) {
  py::dict d;
  d["tokenize_ms"] = s.tokenize_ms;
  d["forward_ms"] = s.forward_ms;
  d["tokens"] = s.tokens;
  d["truncated"] = s.truncated;
  return d;
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
  m.def("dequantize_q8_0", [](const std::string& name, py::array_t<uint8_t, py::array::c_style> blocks) {
    if (blocks.ndim() != 1 || blocks.shape(0) % sizeof(BlockQ8_0) != 0) throw py::value_error("dequantize_q8_0: whole blocks expected");
    const Kernels& k = kernels_named(name);
    const size_t n = (size_t)blocks.shape(0) / sizeof(BlockQ8_0) * QK8_0;
    py::array_t<float> out((py::ssize_t)n);
    k.row_to_f32_q8_0(reinterpret_cast<const BlockQ8_0*>(blocks.data()), out.mutable_data(), n);
    return out;
  });

  py::class_<Model>(m, "_Model")
      .def(py::init([](const std::string& path, int threads, const std::string& activations, int64_t max_tokens,
                       size_t batch_tokens, const std::string& kernels) {
             ModelOptions o;
             o.threads = threads;
             if (activations == "f32") o.activations = ActivationMode::F32;
             else if (activations == "int8") o.activations = ActivationMode::INT8;
             else throw py::value_error("activations must be 'f32' or 'int8', got '" + activations + "'");
             o.max_tokens = max_tokens;
             if (batch_tokens < 1) throw py::value_error("batch_tokens must be positive");
             o.batch_tokens = batch_tokens;
             o.kernels = kernels;
             py::gil_scoped_release release;
             return new Model(path, o);
           }),
           py::arg("path"), py::arg("threads") = 0, py::arg("activations") = "f32", py::arg("max_tokens") = 0,
           py::arg("batch_tokens") = 8192, py::arg("kernels") = "")
      .def("tokenize", &Model::tokenize, py::arg("text"))
      .def("encode", [](const Model& self, const std::string& text) {
        bool truncated = false;
        auto ids = self.encode(text, &truncated);
        return py::make_tuple(ids, truncated);
      }, py::arg("text"))
      .def("token_counts", [](const Model& self, const py::list& texts) {
        auto v = to_strings(texts);
        std::vector<int64_t> out(v.size());
        {
          py::gil_scoped_release release;
          bool tr;
          for (size_t i = 0; i < v.size(); ++i) out[i] = (int64_t)self.encode(v[i], &tr).size();
        }
        return out;
      }, py::arg("texts"))
      .def("embed", [](Model& self, const py::list& texts, bool normalize) {
        auto v = to_strings(texts);
        py::array_t<float> out({(py::ssize_t)v.size(), (py::ssize_t)self.dim()});
        float* dst = out.mutable_data();
        EmbedStats st;
        {
          py::gil_scoped_release release;
          self.embed(v, normalize, dst, &st);
        }
        return py::make_tuple(out, stats_dict(st));
      }, py::arg("texts"), py::arg("normalize") = true)
      .def("embed_ids", [](Model& self, const std::vector<std::vector<int32_t>>& seqs, bool normalize) {
        for (const auto& s : seqs) {
          if (s.empty() || (int64_t)s.size() > self.max_tokens()) throw py::value_error("sequence length must be 1..max_tokens");
        }
        py::array_t<float> out({(py::ssize_t)seqs.size(), (py::ssize_t)self.dim()});
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          self.embed_ids(seqs, normalize, dst);
        }
        return out;
      }, py::arg("seqs"), py::arg("normalize") = true)
      .def_property_readonly("dim", &Model::dim)
      .def_property_readonly("max_tokens", &Model::max_tokens)
      .def_property_readonly("threads", &Model::threads)
      .def_property_readonly("kernels", [](const Model& self) { return std::string(self.kernels_name()); })
      .def_property_readonly("prompts", &Model::prompts)
      .def_property_readonly("dims_allowed", &Model::dims_allowed)
      .def_property_readonly("vocab_size", &Model::vocab_size)
      .def_property_readonly("info", &Model::info);
}
