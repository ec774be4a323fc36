// Recursive-descent parser for chat templates, after jinja2/parser.py: the
// statements (chat_template_parser.cpp) and expressions
// (chat_template_parser_expr.cpp) chat templates use. Operator precedence,
// lowest first: `x if c else y`, or, and, not, comparisons and `in`, + -, ~,
// * / // %, **, unary - +, then filters `|`, tests `is` and postfix . [] ().
// Internal to the chat-template code; use parse() from chat_template_ast.h.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/chat_template_ast.h"

namespace qllm::jinja {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  std::unique_ptr<Program> run();

 private:
  // Nesting limits (Python's recursion limit stops Jinja2 near these too): they
  // bound the stack that parsing and rendering use.
  static constexpr int kMaxBlockDepth = 100;
  static constexpr int kMaxExprDepth = 64;

  // ---- token helpers ----
  const Token& cur() const { return t_[i_]; }
  const Token& peek(std::size_t k) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  const Token& next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  bool at_op(std::string_view op) const { return cur().kind == TokKind::Op && cur().text == op; }
  bool at_name(std::string_view n) const { return cur().kind == TokKind::Name && cur().text == n; }
  [[noreturn]] void unexpected(const char* expected) const;
  void expect_op(std::string_view op);
  std::string expect_name(const char* what);
  void expect_block_end();
  // Before a block's body Jinja2 accepts a colon, for Python compatibility.
  void expect_body_start();

  // ---- statements ----
  // Parses nodes until a `{% tag %}` whose tag is in `stops`; leaves the
  // position on that tag's name. `opener`/`open_line` describe the enclosing block.
  Body body(std::initializer_list<const char*> stops, const std::string& opener, int open_line);
  Node statement();
  Node if_stmt(int line);
  Node for_stmt(int line);
  Node set_stmt(int line);

  // ---- expressions ----
  ExprPtr make(Expr::Kind k, int line) { return std::make_unique<Expr>(k, line); }

  ExprPtr expression(bool with_condexpr = true) { return with_condexpr ? condexpr() : or_expr(); }

  // An expression, or `a, b` (a tuple without parentheses), where Jinja2's
  // parse_tuple allows one: set values, outputs, if and for headers.
  ExprPtr tuple_expression(bool with_condexpr);

  // A filter or test name; Jinja2 allows dots in them.
  std::string dotted_name(const char* what);
  ExprPtr condexpr();

  ExprPtr logical(Expr::Kind kind, const char* word, ExprPtr (Parser::*operand)());
  ExprPtr or_expr() { return logical(Expr::Kind::Or, "or", &Parser::and_expr); }
  ExprPtr and_expr() { return logical(Expr::Kind::And, "and", &Parser::not_expr); }
  ExprPtr not_expr();
  ExprPtr compare();

  ExprPtr binary_chain(std::initializer_list<const char*> ops, ExprPtr (Parser::*operand)());
  ExprPtr math1() { return binary_chain({"+", "-"}, &Parser::concat); }
  ExprPtr concat() { return binary_chain({"~"}, &Parser::math2); }
  ExprPtr math2() { return binary_chain({"*", "/", "//", "%"}, &Parser::pow_expr); }
  ExprPtr pow_expr() { return binary_chain({"**"}, &Parser::unary_with_filters); }
  ExprPtr unary_with_filters() { return unary(true); }
  void guard_depth();
  ExprPtr unary(bool with_filter);
  ExprPtr primary();
  ExprPtr postfix(ExprPtr node);
  ExprPtr subscript(ExprPtr obj);
  ExprPtr call(ExprPtr callee);

  // Parses `(args, name=value)` into e.args (after those already there) and e.kwargs.
  void arguments(Expr& e);
  ExprPtr filters_and_tests(ExprPtr node);

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

}  // namespace qllm::jinja
