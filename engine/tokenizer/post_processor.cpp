#include "engine/tokenizer/post_processor.h"

namespace qllm {

using tokjson::Json;
using tokjson::Where;

namespace {

// [id, ...] from a {"id"/"ids"} entry of "special_tokens", or a [token, id] pair.
std::vector<int32_t> ids_of(const Json& v, const Where& w) {
  std::vector<int32_t> out;
  if (v.is_array() && v.size() == 2 && v[1].is_number_integer()) {  // ["<s>", 1]
    out.push_back(v[1].get<int32_t>());
    return out;
  }
  const Json& ids = tokjson::member(v, "ids", w);
  if (!ids.is_array()) tokjson::bad(w.key("ids"), "expected an array of ids");
  for (const Json& id : ids) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      tokjson::bad(w.key("ids"), fmt::format("expected ids, got {}", id.dump()));
    out.push_back(id.get<int32_t>());
  }
  return out;
}

}  // namespace

PostProcessor::PostProcessor(const Json& j, const Where& w) {
  if (!j.is_null()) parse(j, w);
}

void PostProcessor::parse(const Json& j, const Where& w) {
  const std::string type = tokjson::type_of(j, w);
  if (type == "ByteLevel") return;
  if (type == "TemplateProcessing") {
    const Json& single = tokjson::member(j, "single", w);
    const Json& specials = tokjson::member(j, "special_tokens", w);
    if (!single.is_array()) tokjson::bad(w.key("single"), "expected an array of pieces");
    std::vector<int32_t> t;
    for (size_t i = 0; i < single.size(); ++i) {
      const Where pw = w.key("single").index(i);
      const Json& piece = single[i];
      if (const Json* seq = tokjson::optional_member(piece, "Sequence")) {
        (void)seq;
        t.push_back(-1);
      } else if (const Json* sp = tokjson::optional_member(piece, "SpecialToken")) {
        const std::string name = tokjson::get_string(*sp, "id", pw.key("SpecialToken"));
        const Json* entry = tokjson::optional_member(specials, name);
        if (entry == nullptr)
          tokjson::bad(w.key("special_tokens"), fmt::format("no entry for \"{}\"", name));
        for (int32_t id : ids_of(*entry, w.key("special_tokens").key(name))) t.push_back(id);
      } else {
        tokjson::bad(pw, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
    templates_.push_back(std::move(t));
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    const Json& cls = tokjson::member(j, "cls", w);
    const Json& sep = tokjson::member(j, "sep", w);
    std::vector<int32_t> t = ids_of(cls, w.key("cls"));
    t.push_back(-1);
    for (int32_t id : ids_of(sep, w.key("sep"))) t.push_back(id);
    templates_.push_back(std::move(t));
    return;
  }
  if (type == "Sequence") {
    const Json& list = tokjson::member(j, "processors", w);
    if (!list.is_array()) tokjson::bad(w.key("processors"), "expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      if (!list[i].is_null()) parse(list[i], w.key("processors").index(i));
    return;
  }
  tokjson::bad(w.key("type"),
               fmt::format("unsupported post_processor \"{}\" (supported: TemplateProcessing, "
                           "ByteLevel, RobertaProcessing, BertProcessing, Sequence)",
                           type));
}

std::vector<int32_t> PostProcessor::apply(std::vector<int32_t> ids) const {
  for (const auto& t : templates_) {
    std::vector<int32_t> out;
    out.reserve(ids.size() + t.size());
    for (int32_t id : t) {
      if (id < 0)
        out.insert(out.end(), ids.begin(), ids.end());
      else
        out.push_back(id);
    }
    ids = std::move(out);
  }
  return ids;
}

}  // namespace qllm
