// safetensors: writer -> parser round trips, files from Python's safetensors
// library, files we write loaded by Python, and one test per malformation.
#include "engine/common/error.h"
#include "engine/model/safetensors.h"
#include "tests/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <initializer_list>

#include <sys/wait.h>

namespace qllm {
namespace {

namespace fs = std::filesystem;

// A fresh temporary folder, removed again when the test ends.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) : path(test::temp_dir(name)) {}
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& f) const { return path / f; }
};

std::vector<uint8_t> pattern(size_t n, unsigned seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(i * 131 + seed * 17 + 7);
  return v;
}

std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) (s += d[p[i] >> 4]) += d[p[i] & 15];
  return s;
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

struct Spec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

constexpr DType kAllDTypes[] = {DType::BOOL, DType::U8,   DType::I8,  DType::F8_E4M3,
                                DType::F8_E5M2, DType::I16, DType::U16, DType::F16,
                                DType::BF16, DType::I32,  DType::U32, DType::F32,
                                DType::F64,  DType::I64,  DType::U64};

// Writes `specs` with pattern data; returns the data per tensor.
using Metadata = std::map<std::string, std::string>;

std::map<std::string, std::vector<uint8_t>> write_specs(const fs::path& p,
                                                        const std::vector<Spec>& specs,
                                                        const Metadata& md) {
  SafetensorsWriter w;
  std::map<std::string, std::vector<uint8_t>> data;
  unsigned seed = 0;
  for (const auto& s : specs) {
    auto bytes = pattern(size_t(numel_of(s.shape)) * dtype_size(s.dtype), seed++);
    w.add_bytes(s.name, s.dtype, s.shape, bytes);
    data[s.name] = std::move(bytes);
  }
  for (const auto& [k, v] : md) w.set_metadata(k, v);
  w.write(p);
  return data;
}

void expect_file_matches(const fs::path& p, const std::vector<Spec>& specs,
                         const std::map<std::string, std::vector<uint8_t>>& data,
                         const std::map<std::string, std::string>& md) {
  SafetensorsFile f(p);
  EXPECT_EQ(f.header().data_offset % 8, 0u) << "header must be padded to 8 bytes";
  EXPECT_EQ(f.header().data_offset, 8 + f.header().header_len);
  EXPECT_EQ(f.header().metadata, md);
  ASSERT_EQ(f.names().size(), specs.size());
  for (const auto& s : specs) {
    SCOPED_TRACE(s.name);
    ASSERT_TRUE(f.contains(s.name));
    const TensorView v = f.tensor(s.name);
    EXPECT_EQ(v.name, s.name);
    EXPECT_EQ(v.dtype, s.dtype);
    EXPECT_EQ(std::vector<int64_t>(v.shape.begin(), v.shape.end()), s.shape);
    EXPECT_EQ(v.numel(), numel_of(s.shape));
    const auto& want = data.at(s.name);
    ASSERT_EQ(v.nbytes, want.size());
    EXPECT_EQ(hex(v.data, v.nbytes), hex(want.data(), want.size()));
  }
}

std::vector<Spec> every_dtype_specs() {
  std::vector<Spec> specs;
  int i = 0;
  for (DType t : kAllDTypes) {
    std::vector<int64_t> shape = i % 3 == 0 ? std::vector<int64_t>{2, 3}
                                 : i % 3 == 1 ? std::vector<int64_t>{5}
                                              : std::vector<int64_t>{1, 2, 2};
    specs.push_back({"t." + std::string(dtype_name(t)), t, shape});
    ++i;
  }
  return specs;
}

std::vector<Spec> scalar_and_empty_specs() {
  return {{"scalar.f32", DType::F32, {}},      {"scalar.bool", DType::BOOL, {}},
          {"empty.bf16", DType::BF16, {0}},     {"empty.i16", DType::I16, {3, 0}},
          {"empty.f64", DType::F64, {0, 4, 2}}, {"bytes", DType::U8, {3}},
          {"empty.last", DType::F32, {0}}};
}

TEST(SafetensorsRoundTrip, EveryDtype) {
  const TempDir dir("st_every_dtype");
  const auto p = dir / "every.safetensors";
  const auto specs = every_dtype_specs();
  const std::map<std::string, std::string> md{{"format", "pt"}, {"note", "caf\xc3\xa9 \"q\""}};
  const auto data = write_specs(p, specs, md);
  expect_file_matches(p, specs, data, md);
  // Tensors are written in declaration order.
  SafetensorsFile f(p);
  for (size_t i = 0; i < specs.size(); ++i) EXPECT_EQ(f.header().tensors[i].name, specs[i].name);
}

TEST(SafetensorsRoundTrip, ScalarAndEmptyTensors) {
  const TempDir dir("st_scalar_empty");
  const auto p = dir / "se.safetensors";
  const auto specs = scalar_and_empty_specs();
  const auto data = write_specs(p, specs, {});
  expect_file_matches(p, specs, data, {});
  SafetensorsFile f(p);
  EXPECT_EQ(f.tensor("scalar.f32").numel(), 1);
  EXPECT_EQ(f.tensor("scalar.f32").nbytes, 4u);
  EXPECT_EQ(f.tensor("empty.i16").nbytes, 0u);
}

TEST(SafetensorsRoundTrip, NoTensors) {
  const TempDir dir("st_none");
  SafetensorsWriter().write(dir / "empty.safetensors");
  SafetensorsFile a(dir / "empty.safetensors");
  EXPECT_TRUE(a.names().empty());
  EXPECT_TRUE(a.header().metadata.empty());
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.write(dir / "md.safetensors");
  SafetensorsFile b(dir / "md.safetensors");
  EXPECT_EQ(b.header().metadata.at("format"), "pt");
}

TEST(SafetensorsWriter, StreamsLargeTensorInChunksWithProgress) {
  const TempDir dir("st_stream");
  const auto p = dir / "big.safetensors";
  constexpr uint64_t kBig = (9u << 20) + 13;  // more than two write chunks
  SafetensorsWriter w;
  w.add_bytes("small", DType::F32, {3}, pattern(12, 1));
  uint64_t expect_offset = 0;
  size_t calls = 0;
  w.add("big", DType::U8, {int64_t(kBig)}, [&](uint64_t offset, std::span<uint8_t> out) {
    EXPECT_EQ(offset, expect_offset) << "chunks must be requested in order";
    EXPECT_LE(out.size(), size_t(8u << 20));
    for (size_t i = 0; i < out.size(); ++i) out[i] = uint8_t((offset + i) * 7 + 3);
    expect_offset += out.size();
    ++calls;
  });
  EXPECT_EQ(w.data_bytes(), 12 + kBig);
  std::vector<std::pair<uint64_t, uint64_t>> prog;
  w.write(p, [&](uint64_t done, uint64_t total) { prog.emplace_back(done, total); });
  EXPECT_EQ(expect_offset, kBig);
  EXPECT_GE(calls, 3u);
  ASSERT_FALSE(prog.empty());
  for (size_t i = 1; i < prog.size(); ++i) EXPECT_GT(prog[i].first, prog[i - 1].first);
  EXPECT_EQ(prog.back().first, prog.back().second);
  EXPECT_EQ(prog.back().second, fs::file_size(p));

  SafetensorsFile f(p);
  const TensorView v = f.tensor("big");
  ASSERT_EQ(v.nbytes, kBig);
  for (uint64_t i = 0; i < kBig; i += 4093) ASSERT_EQ(v.data[i], uint8_t(i * 7 + 3)) << i;
  EXPECT_EQ(v.data[kBig - 1], uint8_t((kBig - 1) * 7 + 3));
}

TEST(SafetensorsWriter, ManyTensors) {
  // As many tensors as a large MoE checkpoint (per-expert weights).
  const TempDir dir("st_many");
  const auto p = dir / "many.safetensors";
  SafetensorsWriter w;
  constexpr int kN = 20000;
  for (int i = 0; i < kN; ++i)
    w.add_bytes(fmt::format("model.layers.{}.mlp.experts.{}.up_proj.weight", i / 128, i % 128),
                DType::U8, {1}, std::vector<uint8_t>{uint8_t(i)});
  w.write(p);
  SafetensorsFile f(p);
  ASSERT_EQ(f.header().tensors.size(), size_t(kN));
  const TensorView v = f.tensor("model.layers.77.mlp.experts.5.up_proj.weight");
  EXPECT_EQ(v.data[0], uint8_t(77 * 128 + 5));
}

TEST(SafetensorsWriter, RejectsBadDeclarations) {
  const TempDir dir("st_writer_bad");
  SafetensorsWriter w;
  EXPECT_THROW(w.add_bytes("x", DType::F32, {2}, pattern(7, 0)), Error);
  EXPECT_THROW(w.add_bytes("x", DType::F32, {-1}, {}), Error);
  EXPECT_THROW(w.add_bytes("__metadata__", DType::U8, {1}, pattern(1, 0)), Error);
  EXPECT_THROW(w.add_bytes("bad\xff", DType::U8, {1}, pattern(1, 0)), Error);
  EXPECT_THROW(w.add("nofill", DType::U8, {4}, nullptr), Error);
  EXPECT_THROW(w.set_metadata("k", "\xc3"), Error);
  EXPECT_EQ(w.data_bytes(), 0u) << "rejected tensors must not be kept";
  w.add_bytes("dup", DType::U8, {1}, pattern(1, 0));
  w.add_bytes("dup", DType::U8, {1}, pattern(1, 0));
  try {
    w.write(dir / "dup.safetensors");
    ADD_FAILURE() << "duplicate names accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'dup'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "dup.safetensors"));
}

TEST(SafetensorsWriter, FailedWriteLeavesNoFile) {
  const TempDir dir("st_writer_fail");
  SafetensorsWriter w;
  w.add("t", DType::U8, {16}, [](uint64_t, std::span<uint8_t>) { fail("source went away"); });
  EXPECT_THROW(w.write(dir / "t.safetensors"), Error);
  EXPECT_TRUE(fs::is_empty(dir.path)) << "no final or partial file may remain";
  EXPECT_THROW(w.write(dir / "missing_dir" / "t.safetensors"), Error);
}

TEST(MappedFile, EmptyMissingAndDirectory) {
  const TempDir dir("st_mapped");
  std::ofstream(dir / "empty.bin").close();
  MappedFile m(dir / "empty.bin");
  EXPECT_EQ(m.bytes().size(), 0u);
  EXPECT_EQ(m.path(), dir / "empty.bin");
  try {
    MappedFile x(dir / "nope.bin");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(MappedFile{dir.path}, Error);
  // An empty file is not a safetensors file: the error names it.
  try {
    SafetensorsFile f(dir / "empty.bin");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("too short"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsFile, MissingTensorNamesFileAndTensor) {
  const TempDir dir("st_missing");
  const auto p = dir / "m.safetensors";
  write_specs(p, {{"a", DType::F32, {1}}}, {});
  SafetensorsFile f(p);
  EXPECT_FALSE(f.contains("b"));
  try {
    f.tensor("model.b.weight");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model.b.weight"), std::string::npos) << e.what();
  }
}

// --- Interoperability with Python's safetensors library -----------------------

class PythonFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(PythonFixture, ParsesLikePython) {
  const fs::path dir = test::data_dir() / "safetensors";
  const std::string name = GetParam();
  std::ifstream ef(dir / (name + ".expected.json"));
  ASSERT_TRUE(ef) << "missing fixture " << name << " (tools/gen_safetensors_fixtures.py gen)";
  const auto want = nlohmann::json::parse(ef);
  SafetensorsFile f(dir / (name + ".safetensors"));
  const auto& h = f.header();
  EXPECT_EQ(h.header_len, want["header_len"].get<uint64_t>());
  std::map<std::string, std::string> md;
  if (!want["metadata"].is_null()) md = want["metadata"].get<std::map<std::string, std::string>>();
  EXPECT_EQ(h.metadata, md);
  ASSERT_EQ(h.tensors.size(), want["tensors"].size());
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const auto& w = want["tensors"][i];
    const auto& t = h.tensors[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, w["name"].get<std::string>()) << "tensors in data-offset order";
    EXPECT_EQ(dtype_name(t.dtype), w["dtype"].get<std::string>());
    EXPECT_EQ(t.shape, w["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.begin, w["data_offsets"][0].get<uint64_t>());
    EXPECT_EQ(t.end, w["data_offsets"][1].get<uint64_t>());
    const TensorView v = f.tensor(t.name);
    EXPECT_EQ(hex(v.data, v.nbytes), w["data_hex"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PythonFixture,
                         ::testing::Values("all_dtypes", "scalars_and_empty", "no_tensors",
                                           "names"));

// Writes the file's description in the fixture JSON format for the Python checker.
void write_expected(const fs::path& p, const fs::path& json_path) {
  SafetensorsFile f(p);
  nlohmann::json j;
  j["header_len"] = f.header().header_len;
  j["metadata"] = f.header().metadata.empty() ? nlohmann::json(nullptr)
                                              : nlohmann::json(f.header().metadata);
  j["tensors"] = nlohmann::json::array();
  for (const auto& t : f.header().tensors) {
    const TensorView v = f.tensor(t.name);
    j["tensors"].push_back({{"name", t.name},
                            {"dtype", dtype_name(t.dtype)},
                            {"shape", t.shape},
                            {"data_offsets", {t.begin, t.end}},
                            {"data_hex", hex(v.data, v.nbytes)}});
  }
  std::ofstream(json_path) << j.dump(1);
}

TEST(SafetensorsPython, WrittenFilesLoadInPython) {
  const TempDir dir("st_python");
  write_specs(dir / "every.safetensors", every_dtype_specs(),
              {{"format", "pt"}, {"note", "caf\xc3\xa9"}});
  write_specs(dir / "se.safetensors", scalar_and_empty_specs(), {});
  SafetensorsWriter().write(dir / "none.safetensors");
  const fs::path script = fs::path(QLLM_SOURCE_DIR) / "tools" / "gen_safetensors_fixtures.py";
  for (const char* n : {"every", "se", "none"}) {
    SCOPED_TRACE(n);
    const fs::path st = dir / (std::string(n) + ".safetensors");
    const fs::path js = dir / (std::string(n) + ".json");
    write_expected(st, js);
    const std::string cmd =
        "python3 '" + script.string() + "' check '" + st.string() + "' '" + js.string() + "'";
    const int rc = std::system(cmd.c_str());
    ASSERT_NE(rc, -1);
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (code == 77 || code == 127) GTEST_SKIP() << "python3 with safetensors not available";
    EXPECT_EQ(code, 0) << cmd;
  }
}

// Accept/reject parity with Python's safetensors over the fuzz seed corpus,
// which holds valid files and one file per kind of malformation.
TEST(SafetensorsPython, AcceptsAndRejectsLikePython) {
  // Deliberate differences, each with its reason.
  const std::map<std::string, std::string> known = {
      {"bad_dtype", "F4 (4-bit) and other dtypes newer than qllm's DType list are refused"},
  };
  const fs::path corpus = fs::path(QLLM_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "safetensors";
  const fs::path script = fs::path(QLLM_SOURCE_DIR) / "tools" / "gen_safetensors_fixtures.py";
  const TempDir tmp("st_parity");
  const fs::path out = tmp / "verdicts.jsonl";
  std::string cmd = "python3 '" + script.string() + "' verdicts";
  size_t n_files = 0;
  for (const auto& e : fs::directory_iterator(corpus)) {
    cmd += " '" + e.path().string() + "'";
    ++n_files;
  }
  cmd += " > '" + out.string() + "'";
  const int rc = std::system(cmd.c_str());
  ASSERT_NE(rc, -1);
  const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  if (code == 77 || code == 127) GTEST_SKIP() << "python3 with safetensors not available";
  ASSERT_EQ(code, 0) << cmd;
  std::ifstream in(out);
  size_t n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    const auto v = nlohmann::json::parse(line);
    const std::string file = v["file"].get<std::string>();
    SCOPED_TRACE(file);
    std::string ours;
    try {
      SafetensorsFile f(corpus / file);
    } catch (const Error& e) {
      ours = e.what();
    }
    const bool python_ok = v["accepted"].get<bool>();
    if (known.count(file)) {
      EXPECT_NE(python_ok, ours.empty()) << "known difference gone: " << known.at(file);
      continue;
    }
    EXPECT_EQ(ours.empty(), python_ok)
        << "qllm: " << (ours.empty() ? "accepted" : ours)
        << "\npython: " << (python_ok ? "accepted" : v["error"].get<std::string>());
  }
  EXPECT_EQ(n, n_files);
}

}  // namespace
}  // namespace qllm
