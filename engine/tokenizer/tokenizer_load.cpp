// Reading tokenizer.json into a Tokenizer.
#include "engine/common/error.h"
#include "engine/tokenizer/tokenizer_impl.h"

#include <fstream>
#include <sstream>

namespace qllm {

using tokjson::Json;
using tokjson::Where;

namespace {

const Json& component(const Json& root, const char* key) {
  static const Json kNull;
  auto it = root.find(key);
  return it == root.end() ? kNull : *it;
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    file = path / "tokenizer.json";
    if (!std::filesystem::exists(file, ec))
      fail("{}: no tokenizer.json in this folder", path.string());
  } else if (!std::filesystem::exists(path, ec)) {
    fail("{}: tokenizer file not found", path.string());
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("{}: cannot open tokenizer file", file.string());
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) fail("{}: read error", file.string());
  return from_json(buf.str(), file.string());
}

Tokenizer Tokenizer::from_json(std::string_view text, std::string_view name) {
  auto im = std::make_shared<Impl>();
  im->name = std::string(name);
  Json root;
  try {
    root = Json::parse(text);
  } catch (const Json::parse_error& e) {
    fail("{}: not valid JSON: {}", name, e.what());
  }
  const Where w{im->name, ""};
  tokjson::expect_object(root, w);
  if (const Json* v = tokjson::optional_member(root, "version")) {
    if (!v->is_string() || v->get<std::string>() != "1.0")
      tokjson::bad(w.key("version"), fmt::format("expected \"1.0\", got {}", v->dump()));
  }

  const Json& model = tokjson::member(root, "model", w);
  tokjson::expect_object(model, w.key("model"));
  const bool looks_bpe = model.contains("merges");
  const std::string type =
      tokjson::get_string_or(model, "type", w.key("model"), looks_bpe ? "BPE" : "");
  if (type != "BPE") {
    tokjson::bad(w.key("model").key("type"),
                 type.empty()
                     ? std::string("missing (only BPE models are supported)")
                     : fmt::format("unsupported model \"{}\" (only BPE is supported)", type));
  }
  im->model = std::make_unique<BpeModel>(model, w.key("model"));

  im->normalizer = parse_normalizer(component(root, "normalizer"), w.key("normalizer"));
  im->pre_tokenizer = parse_pre_tokenizer(component(root, "pre_tokenizer"), w.key("pre_tokenizer"));
  im->post_processor = PostProcessor(component(root, "post_processor"), w.key("post_processor"));
  im->decoder = parse_decoder(component(root, "decoder"), w.key("decoder"));
  im->added = AddedVocabulary(tokjson::optional_member(root, "added_tokens"), w.key("added_tokens"),
                              *im->model, im->normalizer.get());
  im->vocab_size = std::max(im->model->max_id(), im->added.max_id()) + 1;

  Tokenizer t;
  t.impl_ = std::move(im);
  return t;
}

}  // namespace qllm
