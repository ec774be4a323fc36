// Parser for chat templates: Jinja2's grammar (jinja2/parser.py) for the
// statements and expressions chat templates use. Operator precedence, lowest
// first: `x if c else y`, or, and, not, comparisons and `in`, + -, ~,
// * / // %, **, unary - +, then filters `|`, tests `is` and postfix . [] ().
#include <fmt/format.h>

#include <algorithm>
#include <initializer_list>

#include "engine/tokenizer/chat_template_ast.h"

namespace qllm::jinja {
namespace {

// Nesting limits (Python's recursion limit stops Jinja2 near these too): they
// bound the stack that parsing and rendering use.
constexpr int kMaxBlockDepth = 100;
constexpr int kMaxExprDepth = 64;

std::string describe(const Token& t) {
  switch (t.kind) {
    case TokKind::Text: return "template text";
    case TokKind::BlockBegin: return "'{%'";
    case TokKind::BlockEnd: return "end of statement '%}'";
    case TokKind::VarBegin: return "'{{'";
    case TokKind::VarEnd: return "end of expression '}}'";
    case TokKind::Name: return fmt::format("'{}'", t.text);
    case TokKind::String: return "a string";
    case TokKind::Int:
    case TokKind::Float: return fmt::format("number {}", t.text);
    case TokKind::Op: return fmt::format("'{}'", t.text);
    case TokKind::Eof: return "end of template";
  }
  return "token";
}

const char* end_tag_for(const std::string& tag) {
  if (tag == "if") return "endif";
  if (tag == "for") return "endfor";
  if (tag == "set") return "endset";
  return "endgeneration";
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  std::unique_ptr<Program> run() {
    auto program = std::make_unique<Program>();
    program->body = body({}, "", 0);
    // Like Jinja2's compiler, reject unknown filters and tests after parsing,
    // except inside if branches and conditional expressions, where they only
    // fail if they run.
    for (const auto& u : unknown_)
      if (!u.soft) syntax_error(u.line, u.message);
    return program;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return t_[i_]; }
  const Token& peek(std::size_t k) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  const Token& next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  bool at_op(std::string_view op) const { return cur().kind == TokKind::Op && cur().text == op; }
  bool at_name(std::string_view n) const { return cur().kind == TokKind::Name && cur().text == n; }
  [[noreturn]] void unexpected(const char* expected) const {
    syntax_error(cur().line, fmt::format("expected {}, got {}", expected, describe(cur())));
  }
  void expect_op(std::string_view op) {
    if (!at_op(op)) unexpected(fmt::format("'{}'", op).c_str());
    next();
  }
  std::string expect_name(const char* what) {
    if (cur().kind != TokKind::Name) unexpected(what);
    return next().text;
  }
  void expect_block_end() {
    if (cur().kind != TokKind::BlockEnd) unexpected("end of statement '%}'");
    next();
  }
  // Before a block's body Jinja2 accepts a colon, for Python compatibility.
  void expect_body_start() {
    if (at_op(":")) next();
    expect_block_end();
  }

  // ---- statements ----
  // Parses nodes until a `{% tag %}` whose tag is in `stops`; leaves the
  // position on that tag's name. `opener`/`open_line` describe the enclosing block.
  Body body(std::initializer_list<const char*> stops, const std::string& opener, int open_line) {
    if (++block_depth_ > kMaxBlockDepth) syntax_error(cur().line, "blocks nested too deeply");
    Body out;
    while (true) {
      const Token& tok = cur();
      if (tok.kind == TokKind::Eof) {
        if (stops.size() == 0) break;
        syntax_error(open_line, fmt::format("unexpected end of template: '{}' block is not closed (missing "
                                            "'{{% {} %}}')",
                                            opener, end_tag_for(opener)));
      }
      if (tok.kind == TokKind::Text) {
        Node n(Node::Kind::Text, tok.line);
        n.text = tok.text;
        out.push_back(std::move(n));
        next();
        continue;
      }
      if (tok.kind == TokKind::VarBegin) {
        next();
        Node n(Node::Kind::Output, tok.line);
        n.expr = tuple_expression(true);
        if (cur().kind != TokKind::VarEnd) unexpected("end of expression '}}'");
        next();
        out.push_back(std::move(n));
        continue;
      }
      if (tok.kind != TokKind::BlockBegin) unexpected("template text or a tag");
      const Token& name = peek(1);
      if (name.kind == TokKind::Name &&
          std::any_of(stops.begin(), stops.end(), [&](const char* s) { return name.text == s; })) {
        next();
        break;
      }
      next();
      out.push_back(statement());
    }
    --block_depth_;
    return out;
  }

  Node statement() {
    const Token& tok = cur();
    if (tok.kind != TokKind::Name) unexpected("a tag name");
    const std::string tag = tok.text;
    const int line = tok.line;
    next();
    if (tag == "if") return if_stmt(line);
    if (tag == "for") return for_stmt(line);
    if (tag == "set") return set_stmt(line);
    if (tag == "break" || tag == "continue") {
      if (loops_ == 0) syntax_error(line, fmt::format("'{}' outside a for loop", tag));
      expect_block_end();
      return Node(tag == "break" ? Node::Kind::Break : Node::Kind::Continue, line);
    }
    if (tag == "generation") {
      expect_body_start();
      Soft fresh(*this, false);
      Node n(Node::Kind::Scope, line);
      n.body = body({"endgeneration"}, tag, line);
      next();
      expect_block_end();
      return n;
    }
    static constexpr std::string_view kEndTags[] = {"elif", "else", "endif", "endfor", "endset",
                                                    "endgeneration"};
    if (std::find(std::begin(kEndTags), std::end(kEndTags), tag) != std::end(kEndTags))
      syntax_error(line, fmt::format("unexpected '{{% {} %}}' without a matching opening tag", tag));
    syntax_error(line, fmt::format("unsupported tag '{}'", tag));
  }

  Node if_stmt(int line) {
    Soft soft(*this, true);
    Node n(Node::Kind::If, line);
    ExprPtr cond = tuple_expression(false);  // as Jinja2: no `x if c else y` directly in an if
    expect_body_start();
    while (true) {
      Body b = body({"elif", "else", "endif"}, "if", line);
      n.branches.emplace_back(std::move(cond), std::move(b));
      const std::string tag = next().text;
      if (tag == "endif") break;
      if (tag == "else") {
        expect_body_start();
        n.branches.emplace_back(nullptr, body({"endif"}, "if", line));
        next();
        break;
      }
      cond = tuple_expression(false);  // elif
      expect_body_start();
    }
    expect_block_end();
    return n;
  }

  Node for_stmt(int line) {
    Node n(Node::Kind::For, line);
    n.targets.push_back(expect_name("a loop variable name"));
    while (at_op(",")) {
      next();
      n.targets.push_back(expect_name("a loop variable name"));
    }
    if (!at_name("in")) unexpected("'in'");
    next();
    n.expr = tuple_expression(false);
    Soft fresh(*this, false);
    if (at_name("if")) {
      next();
      n.cond = expression();
    }
    if (at_name("recursive")) syntax_error(cur().line, "unsupported: recursive for loops");
    expect_body_start();
    ++loops_;
    n.body = body({"else", "endfor"}, "for", line);
    --loops_;
    if (next().text == "else") {
      expect_body_start();
      n.else_body = body({"endfor"}, "for", line);
      next();
    }
    expect_block_end();
    return n;
  }

  Node set_stmt(int line) {
    Node n(Node::Kind::Set, line);
    n.targets.push_back(expect_name("a variable name"));
    if (at_op(".")) {
      next();
      n.attr = expect_name("an attribute name");
    } else {
      while (at_op(",")) {
        next();
        n.targets.push_back(expect_name("a variable name"));
      }
    }
    if ((cur().kind == TokKind::BlockEnd || at_op(":")) && n.targets.size() == 1 && n.attr.empty()) {
      expect_body_start();
      Soft fresh(*this, false);
      n.kind = Node::Kind::SetBlock;
      n.body = body({"endset"}, "set", line);
      next();
      expect_block_end();
      return n;
    }
    if (at_op("|")) syntax_error(cur().line, "unsupported: filters on a block set");
    expect_op("=");
    n.expr = tuple_expression(true);
    expect_block_end();
    return n;
  }

  // ---- expressions ----
  ExprPtr make(Expr::Kind k, int line) { return std::make_unique<Expr>(k, line); }

  ExprPtr expression(bool with_condexpr = true) { return with_condexpr ? condexpr() : or_expr(); }

  // An expression, or `a, b` (a tuple without parentheses), where Jinja2's
  // parse_tuple allows one: set values, outputs, if and for headers.
  ExprPtr tuple_expression(bool with_condexpr) {
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
  std::string dotted_name(const char* what) {
    std::string name = expect_name(what);
    while (at_op(".")) {
      next();
      name += "." + expect_name(what);
    }
    return name;
  }

  ExprPtr condexpr() {
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

  ExprPtr logical(Expr::Kind kind, const char* word, ExprPtr (Parser::*operand)()) {
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
  ExprPtr or_expr() { return logical(Expr::Kind::Or, "or", &Parser::and_expr); }
  ExprPtr and_expr() { return logical(Expr::Kind::And, "and", &Parser::not_expr); }

  ExprPtr not_expr() {
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

  ExprPtr compare() {
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

  ExprPtr binary_chain(std::initializer_list<const char*> ops, ExprPtr (Parser::*operand)()) {
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
  ExprPtr math1() { return binary_chain({"+", "-"}, &Parser::concat); }
  ExprPtr concat() { return binary_chain({"~"}, &Parser::math2); }
  ExprPtr math2() { return binary_chain({"*", "/", "//", "%"}, &Parser::pow_expr); }
  ExprPtr pow_expr() { return binary_chain({"**"}, &Parser::unary_with_filters); }
  ExprPtr unary_with_filters() { return unary(true); }

  void guard_depth() {
    if (++depth_ > kMaxExprDepth) syntax_error(cur().line, "expression nested too deeply");
  }

  ExprPtr unary(bool with_filter) {
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

  ExprPtr primary() {
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

  ExprPtr postfix(ExprPtr node) {
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

  ExprPtr subscript(ExprPtr obj) {
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

  ExprPtr call(ExprPtr callee) {
    auto e = make(Expr::Kind::Call, cur().line);
    e->args.push_back(std::move(callee));
    arguments(*e);
    return e;
  }

  // Parses `(args, name=value)` into e.args (after those already there) and e.kwargs.
  void arguments(Expr& e) {
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

  ExprPtr filters_and_tests(ExprPtr node) {
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

  // Jinja2 compiles if branches and conditional expressions in "soft" frames
  // and for loop bodies, set blocks and call blocks in fresh ones.
  struct Soft {
    Soft(Parser& p, bool soft) : p_(p), saved_(p.soft_) { p.soft_ = soft; }
    ~Soft() { p_.soft_ = saved_; }
    Soft(const Soft&) = delete;
    Soft& operator=(const Soft&) = delete;
    Parser& p_;
    bool saved_;
  };
  struct Unknown {
    int line;
    std::string message;
    bool soft;
  };

  std::vector<Token> t_;
  std::size_t i_ = 0;
  bool soft_ = false;
  std::vector<Unknown> unknown_;
  int depth_ = 0;
  int block_depth_ = 0;
  int loops_ = 0;
};

}  // namespace

std::unique_ptr<Program> parse(const std::string& source) { return Parser(lex(source)).run(); }

}  // namespace qllm::jinja
