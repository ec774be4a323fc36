// Evaluator for chat templates: runs a parsed Program against a JSON context.
//
// Scoping follows Jinja2: `set` at the top level (or inside `if`) defines a
// template variable; inside a for loop it lasts for the current iteration only
// (which is why templates use namespace() to carry state out of loops).
#include <fmt/format.h>

#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/chat_template_ast.h"

namespace qllm::jinja {
namespace {

constexpr std::size_t kMaxOutputBytes = std::size_t{256} << 20;

// A readable name for an expression in "is undefined" messages.
std::string describe(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::Name: return e.name;
    case Expr::Kind::Attr: return describe(*e.args[0]) + "." + e.name;
    case Expr::Kind::Item:
      if (e.args[1]->kind == Expr::Kind::Literal) return describe(*e.args[0]) + "[" + repr(*e.args[1]->value) + "]";
      return describe(*e.args[0]) + "[...]";
    case Expr::Kind::Call: return describe(*e.args[0]) + "(...)";
    case Expr::Kind::Filter: return describe(*e.args[0]) + "|" + e.name;
    case Expr::Kind::Literal: return repr(*e.value);
    default: return "expression";
  }
}

enum class Flow { Normal, Break, Continue };

class Renderer {
 public:
  // The context outlives the render and no value escapes it: share it uncopied.
  explicit Renderer(const Json& context)
      : context_(Value::shared(std::shared_ptr<const Json>(&context, [](const Json*) {}))) {
    frames_.emplace_back();
  }

  std::string run(const Program& program) {
    exec(program.body);
    return std::move(out_);
  }

 private:
  using Frame = std::vector<std::pair<std::string, Value>>;

  Value lookup(const std::string& name) const {
    for (auto f = frames_.rbegin(); f != frames_.rend(); ++f)
      for (auto v = f->rbegin(); v != f->rend(); ++v)
        if (v->first == name) return v->second;
    const Json& ctx = context_.json();
    auto it = ctx.find(name);
    if (it != ctx.end()) return Value::part_of(context_, *it);
    return Value::undefined(name);
  }

  void assign(const std::string& name, Value v) {
    for (auto& [k, old] : frames_.back())
      if (k == name) {
        old = std::move(v);
        return;
      }
    frames_.back().emplace_back(name, std::move(v));
  }

  void write(const std::string& s, int line) {
    if (out_.size() + s.size() > kMaxOutputBytes) throw ChatTemplateError(line, "rendered text is too large");
    out_ += s;
  }

  // ---- statements ----
  Flow exec(const Body& body) {
    for (const Node& n : body) {
      Flow f = exec(n);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Node& n) {
    switch (n.kind) {
      case Node::Kind::Text: write(n.text, n.line); return Flow::Normal;
      case Node::Kind::Output: write(to_str(eval(*n.expr)), n.line); return Flow::Normal;
      case Node::Kind::If:
        for (const auto& [cond, body] : n.branches)
          if (!cond || truthy(eval(*cond))) return exec(body);
        return Flow::Normal;
      case Node::Kind::For: return exec_for(n);
      case Node::Kind::Set: exec_set(n); return Flow::Normal;
      case Node::Kind::SetBlock: {
        std::string saved = std::move(out_);
        out_.clear();
        frames_.emplace_back();
        exec(n.body);
        frames_.pop_back();
        std::string captured = std::move(out_);
        out_ = std::move(saved);
        assign(n.targets[0], Value(Json(std::move(captured))));
        return Flow::Normal;
      }
      case Node::Kind::Break: return Flow::Break;
      case Node::Kind::Continue: return Flow::Continue;
      case Node::Kind::Scope: {
        frames_.emplace_back();
        Flow f = exec(n.body);
        frames_.pop_back();
        return f;
      }
    }
    return Flow::Normal;
  }

  void bind(const Node& n, const std::shared_ptr<const Json>& items, std::size_t i) {
    Value item = Value::shared(std::shared_ptr<const Json>(items, &(*items)[i]));
    if (n.targets.size() == 1) {
      assign(n.targets[0], std::move(item));
      return;
    }
    const Json& j = item.json();
    if (!j.is_array())
      throw ChatTemplateError(n.line, fmt::format("cannot unpack a '{}' into {} loop variables", type_name(j),
                                                  n.targets.size()));
    if (j.size() != n.targets.size())
      throw ChatTemplateError(n.line, fmt::format("{} values to unpack (expected {}, got {})",
                                                  j.size() > n.targets.size() ? "too many" : "not enough",
                                                  n.targets.size(), j.size()));
    for (std::size_t k = 0; k < n.targets.size(); ++k) assign(n.targets[k], Value::part_of(item, j[k]));
  }

  Flow exec_for(const Node& n) {
    std::shared_ptr<const Json> items;
    {
      Value seq = eval(*n.expr);
      try {
        items = iterate(seq);
      } catch (const EvalFailure& f) {
        throw ChatTemplateError(n.line, f.message);
      }
    }
    if (n.cond) {
      Json kept = Json::array();
      for (std::size_t i = 0; i < items->size(); ++i) {
        frames_.emplace_back();
        bind(n, items, i);
        bool keep = truthy(eval(*n.cond));
        frames_.pop_back();
        if (keep) kept.push_back((*items)[i]);
      }
      items = std::make_shared<const Json>(std::move(kept));
    }
    if (items->empty()) return exec(n.else_body);
    ++loop_depth_;
    for (std::size_t i = 0; i < items->size(); ++i) {
      frames_.emplace_back();
      auto info = std::make_shared<LoopInfo>();
      info->items = items;
      info->index0 = i;
      info->depth = loop_depth_;
      assign("loop", Value::of_loop(std::move(info)));
      bind(n, items, i);
      Flow f = exec(n.body);
      frames_.pop_back();
      if (f == Flow::Break) break;
    }
    --loop_depth_;
    return Flow::Normal;
  }

  void exec_set(const Node& n) {
    Value v = eval(*n.expr);
    if (!n.attr.empty()) {
      Value target = lookup(n.targets[0]);
      if (target.kind() != Value::Kind::Namespace)
        throw ChatTemplateError(n.line, fmt::format("cannot assign attribute '{}' on '{}' (a {}, not a namespace)",
                                                    n.attr, n.targets[0], type_name(target)));
      if (n.attr[0] == '_')
        throw ChatTemplateError(n.line, fmt::format("namespace attributes cannot start with '_' ('{}')", n.attr));
      target.ns()->set(n.attr, std::move(v));
      return;
    }
    if (n.targets.size() == 1) {
      assign(n.targets[0], std::move(v));
      return;
    }
    if (!v.is_data() || !v.json().is_array() || v.json().size() != n.targets.size())
      throw ChatTemplateError(n.line, fmt::format("cannot unpack {} into {} variables", type_name(v), n.targets.size()));
    for (std::size_t k = 0; k < n.targets.size(); ++k) assign(n.targets[k], Value::part_of(v, v.json()[k]));
  }

  // ---- expressions ----
  Value eval(const Expr& e) {
    try {
      return eval_inner(e);
    } catch (const EvalFailure& f) {
      throw ChatTemplateError(e.line, f.message);
    }
  }

  Args eval_args(const Expr& e, std::size_t first) {
    Args a;
    for (std::size_t i = first; i < e.args.size(); ++i) a.pos.push_back(eval(*e.args[i]));
    for (const auto& [name, arg] : e.kwargs) a.kw.emplace_back(name, eval(*arg));
    return a;
  }

  Json data_of(const Value& v, const char* where) {
    if (v.is_data()) return v.json();
    if (v.is_undefined()) return Json(Json::value_t::discarded);
    eval_fail(fmt::format("unsupported: a {} inside a {}", type_name(v), where));
  }

  Value eval_inner(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::Literal: return Value::shared(e.value);
      case Expr::Kind::Name: return lookup(e.name);
      case Expr::Kind::List:
      case Expr::Kind::Tuple: {
        Json out = Json::array();
        for (const auto& item : e.args) out.push_back(data_of(eval(*item), "list"));
        return Value(std::move(out));
      }
      case Expr::Kind::Dict: {
        Json out = Json::object();
        for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i]);
          if (!k.is_data() || !k.json().is_string())
            eval_fail(fmt::format("unsupported: dict key of type '{}' (only strings)", type_name(k)));
          out[k.json().get<std::string>()] = data_of(eval(*e.args[i + 1]), "dict");
        }
        return Value(std::move(out));
      }
      case Expr::Kind::Attr: {
        const Expr& obj = *e.args[0];
        return get_attr(eval(obj), e.name, [&obj] { return describe(obj); });
      }
      case Expr::Kind::Item: {
        const Expr& obj = *e.args[0];
        Value v = eval(obj);
        return get_item(v, eval(*e.args[1]), [&obj] { return describe(obj); });
      }
      case Expr::Kind::Slice: return slice(e);
      case Expr::Kind::Call: return call(e);
      case Expr::Kind::Filter: {
        Value subject = eval(*e.args[0]);
        return apply_filter(e.name, subject, eval_args(e, 1));
      }
      case Expr::Kind::Test: {
        Value subject = eval(*e.args[0]);
        return Value(Json(apply_test(e.name, subject, eval_args(e, 1)) != e.negated));
      }
      case Expr::Kind::Unary:
        if (e.name == "not") return Value(Json(!truthy(eval(*e.args[0]))));
        return negate(eval(*e.args[0]), e.name == "-");
      case Expr::Kind::Binary: {
        Value a = eval(*e.args[0]);
        Value b = eval(*e.args[1]);
        return binary_op(e.name, a, b);
      }
      case Expr::Kind::And: {
        Value a = eval(*e.args[0]);
        return truthy(a) ? eval(*e.args[1]) : a;
      }
      case Expr::Kind::Or: {
        Value a = eval(*e.args[0]);
        return truthy(a) ? a : eval(*e.args[1]);
      }
      case Expr::Kind::Compare: {
        Value left = eval(*e.args[0]);
        for (std::size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1]);
          const std::string& op = e.ops[i];
          bool ok = op == "in"       ? contains(right, left)
                    : op == "not in" ? !contains(right, left)
                                     : compare(op, left, right);
          if (!ok) return Value(Json(false));
          left = std::move(right);
        }
        return Value(Json(true));
      }
      case Expr::Kind::Cond:
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        return e.args[2] ? eval(*e.args[2]) : Value::undefined("");
    }
    eval_fail("unsupported expression");
  }

  Value slice(const Expr& e) {
    Value obj = eval(*e.args[0]);
    auto bound = [&](const ExprPtr& p) -> std::optional<std::int64_t> {
      if (!p) return std::nullopt;
      Value v = eval(*p);
      if (v.is_data() && v.json().is_null()) return std::nullopt;
      if (!v.is_data() || !(v.json().is_number_integer() || v.json().is_boolean()))
        eval_fail(fmt::format("slice indices must be integers or None, not {}", type_name(v)));
      return as_int(v.json());
    };
    auto start = bound(e.args[1]), stop = bound(e.args[2]), step = bound(e.args[3]);
    require_defined(obj);
    if (!obj.is_data() || !(obj.json().is_array() || obj.json().is_string()))
      eval_fail(obj.is_data() && obj.json().is_object() ? std::string("unhashable type: 'slice'")
                                                        : fmt::format("'{}' object is not subscriptable", type_name(obj)));
    const Json& j = obj.json();
    if (j.is_array()) {
      Json out = Json::array();
      for (auto i : slice_indices(static_cast<std::int64_t>(j.size()), start, stop, step))
        out.push_back(j[static_cast<std::size_t>(i)]);
      return Value(std::move(out));
    }
    std::u32string cps = utf8_decode(j.get_ref<const std::string&>());
    std::u32string out;
    for (auto i : slice_indices(static_cast<std::int64_t>(cps.size()), start, stop, step))
      out += cps[static_cast<std::size_t>(i)];
    return Value(Json(utf8_encode(out)));
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.args[0];
    if (callee.kind == Expr::Kind::Attr) {
      Value obj = eval(*callee.args[0]);
      if (obj.is_undefined()) require_defined(Value::undefined(describe(*callee.args[0])));
      return call_method(obj, callee.name, eval_args(e, 1));
    }
    if (callee.kind == Expr::Kind::Name) {
      Value shadow = lookup(callee.name);
      if (!shadow.is_undefined()) eval_fail(fmt::format("'{}' is not callable", callee.name));
      return call_global(callee.name, eval_args(e, 1), e.line);
    }
    eval_fail(fmt::format("unsupported call of {}", describe(callee)));
  }

  Value context_;
  std::vector<Frame> frames_;
  std::string out_;
  int loop_depth_ = 0;
};

}  // namespace

std::string render_program(const Program& program, const Json& context) {
  if (context.is_null()) return Renderer(Json::object()).run(program);
  if (!context.is_object()) throw ChatTemplateError(0, "the template context must be a JSON object");
  return Renderer(context).run(program);
}

}  // namespace qllm::jinja
