// safetensors parser: one test per malformation. Every error must name the file,
// the offending tensor (or key) and the rule that was broken.
#include "engine/common/error.h"
#include "engine/model/safetensors.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <optional>
#include <string>

namespace qllm {
namespace {

constexpr const char* kWhat = "dir/bad.safetensors";

// u64 length + header + `data` zero bytes; `len` overrides the length field.
std::vector<uint8_t> file_with(std::string_view header, size_t data,
                               std::optional<uint64_t> len = std::nullopt) {
  const uint64_t n = len.value_or(header.size());
  std::vector<uint8_t> b(8);
  for (int i = 0; i < 8; ++i) b[size_t(i)] = uint8_t(n >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + data, 0);
  return b;
}

std::string entry(std::string_view name, std::string_view dtype, std::string_view shape,
                  std::string_view offsets) {
  return fmt::format(R"("{}":{{"dtype":"{}","shape":{},"data_offsets":{}}})", name, dtype, shape,
                     offsets);
}

std::string obj(std::initializer_list<std::string> entries) {
  std::string s = "{";
  for (const auto& e : entries) s += (s.size() > 1 ? "," : "") + e;
  return s + "}";
}

std::string error_of(const std::vector<uint8_t>& b) {
  try {
    parse_safetensors(b, kWhat);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

void expect_error(const std::vector<uint8_t>& b, std::initializer_list<std::string_view> parts) {
  const std::string msg = error_of(b);
  EXPECT_NE(msg.find(kWhat), std::string::npos) << "message must name the file: " << msg;
  for (auto p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "want '" << p << "' in: " << msg;
}

const std::string kA = entry("a", "F32", "[2]", "[0,8]");

TEST(SafetensorsMalformed, AcceptsTheBaseCaseAndPadding) {
  EXPECT_EQ(parse_safetensors(file_with(obj({kA}), 8), kWhat).tensors.size(), 1u);
  EXPECT_NO_THROW(parse_safetensors(file_with(" \n\t" + obj({kA}) + "   \n", 8), kWhat));
  const auto h = parse_safetensors(file_with(R"({"__metadata__":null})", 0), kWhat);
  EXPECT_TRUE(h.metadata.empty());
}

TEST(SafetensorsMalformed, TruncatedFile) {
  expect_error({1, 2, 3, 4, 5}, {"5 bytes", "too short"});
  expect_error({}, {"0 bytes", "too short"});
  auto b = file_with(obj({kA}), 8);
  b.pop_back();  // data cut short
  expect_error(b, {"'a'", "run past the end of the data region (7 bytes)"});
  b = file_with(obj({kA}), 8);
  b.resize(20);  // header cut short
  expect_error(b, {"header length", "runs past the end of the file (20 bytes"});
}

TEST(SafetensorsMalformed, HeaderLengthHugeOrBeyondFile) {
  expect_error(file_with("{}", 0, uint64_t(1) << 40), {"header length 1099511627776", "limit"});
  expect_error(file_with("{}", 0, kMaxSafetensorsHeader + 1), {"exceeds the limit"});
  expect_error(file_with("{}", 0, ~uint64_t(0)), {"exceeds the limit"});
  expect_error(file_with("{}", 90, 1000), {"header length 1000", "runs past the end of the file"});
}

TEST(SafetensorsMalformed, HeaderNotJson) {
  expect_error(file_with("{not json", 0), {"header is not valid JSON"});
  expect_error(file_with(obj({kA}) + std::string("\0\0", 2), 8),
               {"header is not valid JSON", "NUL byte at header byte 54"});
  expect_error(file_with(obj({kA}) + std::string("\0x", 2), 8), {"NUL byte"});
  expect_error(file_with(obj({kA}) + " {}", 8), {"header is not valid JSON"});
  expect_error(file_with(R"({"a\xff":1})", 0), {"header is not valid JSON"});
  expect_error(file_with("", 0), {"empty or blank"});
  expect_error(file_with("        ", 0), {"empty or blank"});
}

TEST(SafetensorsMalformed, HeaderNotAnObject) {
  expect_error(file_with("[1, 2]", 0), {"must be a JSON object", "0x5b"});
  expect_error(file_with("  \"text\"", 0), {"must be a JSON object"});
  expect_error(file_with("null", 0), {"must be a JSON object"});
}

TEST(SafetensorsMalformed, EntryNotAnObject) {
  expect_error(file_with(R"({"a":[1,2]})", 0), {"tensor 'a'", "entry must be an object"});
  expect_error(file_with(R"({"a":"F32"})", 0), {"tensor 'a'", "found a string"});
}

TEST(SafetensorsMalformed, UnknownDtype) {
  expect_error(file_with(obj({entry("w.q", "F4", "[2]", "[0,1]")}), 1),
               {"tensor 'w.q'", "unknown dtype 'F4'", "BF16"});
  expect_error(file_with(obj({entry("w.q", "f32", "[2]", "[0,8]")}), 8),
               {"tensor 'w.q'", "unknown dtype 'f32'"});
  expect_error(file_with(R"({"w":{"dtype":4,"shape":[],"data_offsets":[0,4]}})", 4),
               {"tensor 'w'", "dtype must be a string"});
}

TEST(SafetensorsMalformed, ShapeOffsetSizeMismatch) {
  expect_error(file_with(obj({entry("w", "F32", "[2,3]", "[0,20]")}), 20),
               {"tensor 'w'", "[2, 3] of F32 needs 24 bytes", "[0, 20] hold 20", "size mismatch"});
  expect_error(file_with(obj({entry("s", "BF16", "[]", "[0,4]")}), 4),
               {"tensor 's'", "needs 2 bytes", "size mismatch"});
  expect_error(file_with(obj({entry("e", "F64", "[0,3]", "[0,8]")}), 8),
               {"tensor 'e'", "needs 0 bytes"});
}

TEST(SafetensorsMalformed, SizeOverflow) {
  expect_error(file_with(obj({entry("o", "U8", "[4294967296,4294967296,4]", "[0,0]")}), 0),
               {"tensor 'o'", "overflows 64 bits"});
  expect_error(file_with(obj({entry("o", "F64", "[2305843009213693952]", "[0,0]")}), 0),
               {"tensor 'o'", "overflows 64 bits"});
  expect_error(file_with(obj({entry("o", "U8", "[9223372036854775808]", "[0,0]")}), 0),
               {"tensor 'o'", "shape dimension 0 is too large"});
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
  expect_error(file_with(obj({kA, entry("b", "F32", "[2]", "[4,12]")}), 12),
               {"tensor 'b'", "[4, 12] overlap tensor 'a' [0, 8]"});
  expect_error(file_with(obj({kA, entry("same", "F32", "[2]", "[0,8]")}), 8),
               {"tensor 'same'", "overlap tensor 'a'"});
  // An empty tensor inside another one is an overlap too (Python rejects it).
  expect_error(file_with(obj({kA, entry("e", "F32", "[0]", "[4,4]")}), 8),
               {"tensor 'e'", "[4, 4] overlap tensor 'a' [0, 8]"});
}

TEST(SafetensorsMalformed, HoleBetweenTensors) {
  expect_error(file_with(obj({kA, entry("b", "F32", "[1]", "[12,16]")}), 16),
               {"tensor 'b'", "hole of 4 bytes after tensor 'a' (which ends at 8)"});
  expect_error(file_with(obj({entry("late", "F32", "[1]", "[4,8]")}), 8),
               {"tensor 'late'", "hole of 4 bytes at the start"});
}

TEST(SafetensorsMalformed, TrailingBytesAfterLastTensor) {
  // Python's safetensors rejects them too ("file not fully covered").
  expect_error(file_with(obj({kA}), 9), {"1 trailing bytes after the last tensor 'a'"});
  expect_error(file_with("{}", 3), {"declares no tensors", "3 trailing bytes"});
}

TEST(SafetensorsMalformed, OffsetsPastTheEnd) {
  expect_error(file_with(obj({entry("p", "F32", "[4]", "[0,16]")}), 8),
               {"tensor 'p'", "[0, 16] run past the end of the data region (8 bytes)"});
  expect_error(file_with(obj({entry("p", "F32", "[0]", "[18446744073709551615,"
                                                        "18446744073709551615]")}), 0),
               {"tensor 'p'", "run past the end"});
}

TEST(SafetensorsMalformed, BadOffsets) {
  expect_error(file_with(obj({entry("r", "F32", "[0]", "[8,0]")}), 8),
               {"tensor 'r'", "[8, 0] end before they begin"});
  expect_error(file_with(obj({entry("r", "F32", "[2]", "[0,8,8]")}), 8),
               {"tensor 'r'", "exactly two integers"});
  expect_error(file_with(obj({entry("r", "F32", "[2]", "[8]")}), 8),
               {"tensor 'r'", "exactly two integers", "found 1"});
  expect_error(file_with(obj({entry("r", "F32", "[2]", "[0,-8]")}), 8),
               {"tensor 'r'", "data_offsets[1] is negative (-8)"});
  expect_error(file_with(obj({entry("r", "F32", "[2]", "[0,8.0]")}), 8),
               {"tensor 'r'", "data_offsets[1] must be a non-negative"});
  expect_error(file_with(obj({entry("r", "F32", "[2]", "[0,18446744073709551616]")}), 8),
               {"tensor 'r'", "data_offsets[1]"});
  expect_error(file_with(obj({entry("r", "F32", "[2]", "{}")}), 8),
               {"tensor 'r'", "data_offsets must be an array"});
  expect_error(file_with(obj({entry("r", "F32", "[2]", "[[0],8]")}), 8),
               {"tensor 'r'", "data_offsets[0] must be a non-negative integer, found an array"});
}

TEST(SafetensorsMalformed, DuplicateNames) {
  expect_error(file_with(obj({kA, entry("a", "F32", "[2]", "[8,16]")}), 16),
               {"tensor 'a' appears twice"});
  expect_error(file_with(R"({"__metadata__":{},"__metadata__":{}})", 0),
               {"\"__metadata__\" appears twice"});
  expect_error(file_with(R"({"__metadata__":{"k":"1","k":"2"}})", 0),
               {"__metadata__ key 'k' appears twice"});
  expect_error(
      file_with(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
      {"tensor 'a'", "key 'dtype' appears twice"});
}

TEST(SafetensorsMalformed, NegativeOrNonIntegerDims) {
  expect_error(file_with(obj({entry("n", "F32", "[2,-1]", "[0,8]")}), 8),
               {"tensor 'n'", "shape dimension 1 is negative (-1)"});
  expect_error(file_with(obj({entry("n", "F32", "[2.0]", "[0,8]")}), 8),
               {"tensor 'n'", "shape dimension 0 must be a non-negative integer"});
  expect_error(file_with(obj({entry("n", "F32", "[true]", "[0,8]")}), 8),
               {"tensor 'n'", "found a boolean"});
  expect_error(file_with(obj({entry("n", "F32", "8", "[0,8]")}), 8),
               {"tensor 'n'", "shape must be an array"});
}

TEST(SafetensorsMalformed, NonStringMetadata) {
  expect_error(file_with(R"({"__metadata__":{"k":1}})", 0),
               {"__metadata__ key 'k' must have a string value, found the number 1"});
  expect_error(file_with(R"({"__metadata__":{"k":{"x":"y"}}})", 0),
               {"__metadata__ key 'k'", "found an object"});
  expect_error(file_with(R"({"__metadata__":"x"})", 0), {"__metadata__ must be an object"});
  expect_error(file_with(R"({"__metadata__":["x"]})", 0), {"__metadata__ must be an object"});
}

TEST(SafetensorsMalformed, MissingOrExtraKeys) {
  expect_error(file_with(R"({"m":{"shape":[2],"data_offsets":[0,8]}})", 8),
               {"tensor 'm'", "missing key 'dtype'"});
  expect_error(file_with(R"({"m":{"dtype":"F32","data_offsets":[0,8]}})", 8),
               {"tensor 'm'", "missing key 'shape'"});
  expect_error(file_with(R"({"m":{"dtype":"F32","shape":[2]}})", 8),
               {"tensor 'm'", "missing key 'data_offsets'"});
  expect_error(file_with(R"({"m":{}})", 0), {"tensor 'm'", "missing key"});
  expect_error(
      file_with(R"({"m":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"strides":[1]}})", 8),
      {"tensor 'm'", "unexpected key 'strides'"});
}

TEST(SafetensorsMalformed, DeepNestingIsRejectedEarly) {
  std::string deep = R"({"d":{"dtype":)" + std::string(100000, '[');
  expect_error(file_with(deep, 0), {"tensor 'd'", "dtype must be a string, found an array"});
  std::string objs = "{";
  for (int i = 0; i < 100000; ++i) objs += R"("x":{)";
  expect_error(file_with(objs, 0), {"tensor 'x'", "unexpected key 'x'"});
}

TEST(SafetensorsMalformed, HostileNamesAreQuotedAndCut) {
  const std::string longname(5000, 'n');
  const std::string msg =
      error_of(file_with(obj({entry(longname, "F32", "[1]", "[0,8]")}), 8));
  EXPECT_LT(msg.size(), 600u) << msg;
  EXPECT_NE(msg.find("nnnn'..."), std::string::npos) << msg;
  const std::string ctl = error_of(file_with(obj({entry("a\\u0001b", "XX", "[1]", "[0,4]")}), 4));
  EXPECT_NE(ctl.find("'a\\x01b'"), std::string::npos) << ctl;
  // Raw bytes that are not UTF-8 reach the message only escaped.
  const std::string raw = error_of(file_with("{\"a\xff\xfe\": 1}", 0));
  EXPECT_NE(raw.find("not valid JSON"), std::string::npos) << raw;
  EXPECT_EQ(raw.find('\xff'), std::string::npos) << raw;
  EXPECT_NE(raw.find("\\xff"), std::string::npos) << raw;
  const std::string uni =
      error_of(file_with(obj({entry("\xc3\xa9t\xc3\xa9", "XX", "[1]", "[0,4]")}), 4));
  EXPECT_NE(uni.find("tensor '\xc3\xa9t\xc3\xa9'"), std::string::npos) << uni;
}

TEST(SafetensorsMalformed, EmptyTensorsAtBoundariesAreLegal) {
  const auto h = parse_safetensors(
      file_with(obj({entry("z0", "F32", "[0]", "[0,0]"), kA, entry("z1", "BF16", "[3,0]", "[8,8]"),
                     entry("z2", "U8", "[0]", "[8,8]"), entry("b", "U8", "[]", "[8,9]"),
                     entry("z3", "U8", "[0]", "[9,9]")}),
                9),
      kWhat);
  ASSERT_EQ(h.tensors.size(), 6u);
  EXPECT_EQ(h.tensors[0].name, "z0");
  EXPECT_EQ(h.tensors[5].name, "z3");
}

}  // namespace
}  // namespace qllm
