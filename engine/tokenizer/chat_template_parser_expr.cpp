// Chat-template parser: expressions (see chat_template_parser.h).
#include <fmt/format.h>

#include <algorithm>

#include "engine/tokenizer/chat_template_parser.h"

namespace qllm::jinja {

// An expression, or `a, b` (a tuple without parentheses), where Jinja2's
// parse_tuple allows one: set values, outputs, if and for headers.
ExprPtr Parser::tuple_expression(bool with_condexpr) {
  const int line = cur().line;
  ExprPtr first = expression(with_condexpr);
  if (!at_op(",")) return first;
  auto tuple = make(Expr::Kind::Tuple, line);
  tuple->args.push_back(std::move(first));
  while (at_op(",")) {
    next();
    if (cur().kind == TokKind::BlockEnd || cur().kind == TokKind::VarEnd || at_op(")") || at_name("recursive"))
      break;
    tuple->args.push_back(expression(with_condexpr));
  }
  return tuple;
}

// A filter or test name; Jinja2 allows dots in them.
std::string Parser::dotted_name(const char* what) {
  std::string name = expect_name(what);
  while (at_op(".")) {
    next();
    name += "." + expect_name(what);
  }
  return name;
}

ExprPtr Parser::condexpr() {
  const std::size_t first_unknown = unknown_.size();
  ExprPtr e = or_expr();
  while (at_name("if")) {
    Soft soft(*this, true);
    for (std::size_t i = first_unknown; i < unknown_.size(); ++i) unknown_[i].soft = true;
    auto c = make(Expr::Kind::Cond, cur().line);
    next();
    c->args.push_back(or_expr());
    c->args.push_back(std::move(e));
    if (at_name("else")) {
      next();
      c->args.push_back(condexpr());
    } else {
      c->args.push_back(nullptr);
    }
    e = std::move(c);
  }
  return e;
}

ExprPtr Parser::logical(Expr::Kind kind, const char* word, ExprPtr (Parser::*operand)()) {
  ExprPtr left = (this->*operand)();
  while (at_name(word)) {
    auto e = make(kind, cur().line);
    next();
    e->args.push_back(std::move(left));
    e->args.push_back((this->*operand)());
    left = std::move(e);
  }
  return left;
}

ExprPtr Parser::not_expr() {
  if (at_name("not")) {
    auto e = make(Expr::Kind::Unary, cur().line);
    e->name = "not";
    next();
    guard_depth();
    e->args.push_back(not_expr());
    --depth_;
    return e;
  }
  return compare();
}

ExprPtr Parser::compare() {
  const int line = cur().line;
  ExprPtr first = math1();
  std::unique_ptr<Expr> cmp;
  while (true) {
    std::string op;
    if (cur().kind == TokKind::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                      cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
      op = cur().text;
      next();
    } else if (at_name("in")) {
      op = "in";
      next();
    } else if (at_name("not") && peek(1).kind == TokKind::Name && peek(1).text == "in") {
      op = "not in";
      next();
      next();
    } else {
      break;
    }
    if (!cmp) {
      cmp = make(Expr::Kind::Compare, line);
      cmp->args.push_back(std::move(first));
    }
    cmp->ops.push_back(op);
    cmp->args.push_back(math1());
  }
  return cmp ? std::move(cmp) : std::move(first);
}

ExprPtr Parser::binary_chain(std::initializer_list<const char*> ops, ExprPtr (Parser::*operand)()) {
  ExprPtr left = (this->*operand)();
  while (cur().kind == TokKind::Op &&
         std::any_of(ops.begin(), ops.end(), [&](const char* o) { return cur().text == o; })) {
    auto e = make(Expr::Kind::Binary, cur().line);
    e->name = next().text;
    e->args.push_back(std::move(left));
    e->args.push_back((this->*operand)());
    left = std::move(e);
  }
  return left;
}

void Parser::guard_depth() {
  if (++depth_ > kMaxExprDepth) syntax_error(cur().line, "expression nested too deeply");
}

ExprPtr Parser::unary(bool with_filter) {
  guard_depth();
  ExprPtr node;
  if (at_op("-") || at_op("+")) {
    node = make(Expr::Kind::Unary, cur().line);
    node->name = next().text;
    node->args.push_back(unary(false));
  } else {
    node = primary();
  }
  node = postfix(std::move(node));
  if (with_filter) node = filters_and_tests(std::move(node));
  --depth_;
  return node;
}

ExprPtr Parser::primary() {
  const Token& tok = cur();
  const int line = tok.line;
  if (tok.kind == TokKind::Name) {
    next();
    auto e = make(Expr::Kind::Literal, line);
    if (tok.text == "true" || tok.text == "True") e->value = std::make_shared<const Json>(true);
    else if (tok.text == "false" || tok.text == "False") e->value = std::make_shared<const Json>(false);
    else if (tok.text == "none" || tok.text == "None") e->value = std::make_shared<const Json>(nullptr);
    else {
      e->kind = Expr::Kind::Name;
      e->name = tok.text;
    }
    return e;
  }
  if (tok.kind == TokKind::String) {
    std::string s;
    while (cur().kind == TokKind::String) s += next().text;
    auto e = make(Expr::Kind::Literal, line);
    e->value = std::make_shared<const Json>(std::move(s));
    return e;
  }
  if (tok.kind == TokKind::Int || tok.kind == TokKind::Float) {
    auto e = make(Expr::Kind::Literal, line);
    e->value = tok.kind == TokKind::Int ? std::make_shared<const Json>(tok.ival)
                                        : std::make_shared<const Json>(tok.fval);
    next();
    return e;
  }
  if (at_op("(")) {
    next();
    if (at_op(")")) {
      next();
      return make(Expr::Kind::Tuple, line);
    }
    ExprPtr first = expression();
    if (at_op(")")) {
      next();
      return first;
    }
    auto tuple = make(Expr::Kind::Tuple, line);
    tuple->args.push_back(std::move(first));
    while (at_op(",")) {
      next();
      if (at_op(")")) break;
      tuple->args.push_back(expression());
    }
    expect_op(")");
    return tuple;
  }
  if (at_op("[")) {
    next();
    auto list = make(Expr::Kind::List, line);
    while (!at_op("]")) {
      if (!list->args.empty()) expect_op(",");
      if (at_op("]")) break;
      list->args.push_back(expression());
    }
    next();
    return list;
  }
  if (at_op("{")) {
    next();
    auto dict = make(Expr::Kind::Dict, line);
    while (!at_op("}")) {
      if (!dict->args.empty()) expect_op(",");
      if (at_op("}")) break;
      dict->args.push_back(expression());
      expect_op(":");
      dict->args.push_back(expression());
    }
    next();
    return dict;
  }
  unexpected("an expression");
}

ExprPtr Parser::postfix(ExprPtr node) {
  while (true) {
    if (at_op(".")) {
      const int line = next().line;
      if (cur().kind == TokKind::Int) {
        auto e = make(Expr::Kind::Item, line);
        e->args.push_back(std::move(node));
        auto idx = make(Expr::Kind::Literal, line);
        idx->value = std::make_shared<const Json>(next().ival);
        e->args.push_back(std::move(idx));
        node = std::move(e);
        continue;
      }
      auto e = make(Expr::Kind::Attr, line);
      e->name = expect_name("an attribute name");
      e->args.push_back(std::move(node));
      node = std::move(e);
    } else if (at_op("[")) {
      node = subscript(std::move(node));
    } else if (at_op("(")) {
      node = call(std::move(node));
    } else {
      return node;
    }
  }
}

ExprPtr Parser::subscript(ExprPtr obj) {
  const int line = next().line;  // '['
  ExprPtr start, stop, step;
  bool is_slice = false;
  if (!at_op(":")) start = expression();
  if (at_op(":")) {
    is_slice = true;
    next();
    if (!at_op("]") && !at_op(":")) stop = expression();
    if (at_op(":")) {
      next();
      if (!at_op("]")) step = expression();
    }
  }
  if (at_op(",")) syntax_error(cur().line, "unsupported: tuple subscripts");
  expect_op("]");
  auto e = make(is_slice ? Expr::Kind::Slice : Expr::Kind::Item, line);
  e->args.push_back(std::move(obj));
  e->args.push_back(std::move(start));
  if (is_slice) {
    e->args.push_back(std::move(stop));
    e->args.push_back(std::move(step));
  }
  return e;
}

ExprPtr Parser::call(ExprPtr callee) {
  auto e = make(Expr::Kind::Call, cur().line);
  e->args.push_back(std::move(callee));
  arguments(*e);
  return e;
}

// Parses `(args, name=value)` into e.args (after those already there) and e.kwargs.
void Parser::arguments(Expr& e) {
  expect_op("(");
  bool first = true;
  while (!at_op(")")) {
    if (!first) {
      expect_op(",");
      if (at_op(")")) break;
    }
    first = false;
    if (at_op("*") || at_op("**")) syntax_error(cur().line, "unsupported: *args and **kwargs in calls");
    if (cur().kind == TokKind::Name && peek(1).kind == TokKind::Op && peek(1).text == "=") {
      std::string name = next().text;
      next();
      e.kwargs.emplace_back(std::move(name), expression());
    } else {
      if (!e.kwargs.empty()) syntax_error(cur().line, "positional argument after a keyword argument");
      e.args.push_back(expression());
    }
  }
  next();
}

ExprPtr Parser::filters_and_tests(ExprPtr node) {
  while (true) {
    if (at_op("|")) {
      auto e = make(Expr::Kind::Filter, next().line);
      e->name = dotted_name("a filter name");
      if (!is_jinja_filter(e->name)) unknown_.push_back({e->line, fmt::format("unknown filter '{}'", e->name), soft_});
      e->args.push_back(std::move(node));
      if (at_op("(")) arguments(*e);
      node = std::move(e);
    } else if (at_name("is")) {
      auto e = make(Expr::Kind::Test, next().line);
      if (at_name("not")) {
        e->negated = true;
        next();
      }
      e->name = dotted_name("a test name");
      if (!is_jinja_test(e->name)) unknown_.push_back({e->line, fmt::format("unknown test '{}'", e->name), soft_});
      e->args.push_back(std::move(node));
      const TokKind k = cur().kind;
      if (at_op("(")) {
        arguments(*e);
      } else if ((k == TokKind::Name || k == TokKind::String || k == TokKind::Int || k == TokKind::Float ||
                  at_op("[") || at_op("{")) &&
                 !at_name("else") && !at_name("or") && !at_name("and")) {
        if (at_name("is")) syntax_error(cur().line, "tests cannot be chained with 'is'");
        e->args.push_back(postfix(primary()));
      }
      node = std::move(e);
    } else if (at_op("(")) {
      node = call(std::move(node));
    } else {
      return node;
    }
  }
}

}  // namespace qllm::jinja
