// Chat-template parser: statements and the token helpers (see
// chat_template_parser.h).
#include "engine/tokenizer/chat_template_parser.h"

#include <fmt/format.h>

#include <algorithm>

namespace qllm::jinja {
namespace {

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

}  // namespace

void Parser::unexpected(const char* expected) const {
  syntax_error(cur().line, fmt::format("expected {}, got {}", expected, describe(cur())));
}

void Parser::expect_op(std::string_view op) {
  if (!at_op(op)) unexpected(fmt::format("'{}'", op).c_str());
  next();
}

std::string Parser::expect_name(const char* what) {
  if (cur().kind != TokKind::Name) unexpected(what);
  return next().text;
}

void Parser::expect_block_end() {
  if (cur().kind != TokKind::BlockEnd) unexpected("end of statement '%}'");
  next();
}

// Before a block's body Jinja2 accepts a colon, for Python compatibility.
void Parser::expect_body_start() {
  if (at_op(":")) next();
  expect_block_end();
}

std::unique_ptr<Program> Parser::run() {
  auto program = std::make_unique<Program>();
  program->body = body({}, "", 0);
  // Like Jinja2's compiler, reject unknown filters and tests after parsing,
  // except inside if branches and conditional expressions, where they only
  // fail if they run.
  for (const auto& u : unknown_)
    if (!u.soft) syntax_error(u.line, u.message);
  return program;
}

// ---- statements ----
// Parses nodes until a `{% tag %}` whose tag is in `stops`; leaves the
// position on that tag's name. `opener`/`open_line` describe the enclosing block.
Body Parser::body(std::initializer_list<const char*> stops, const std::string& opener, int open_line) {
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

Node Parser::statement() {
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

Node Parser::if_stmt(int line) {
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

Node Parser::for_stmt(int line) {
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

Node Parser::set_stmt(int line) {
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

std::unique_ptr<Program> parse(const std::string& source) { return Parser(lex(source)).run(); }

}  // namespace qllm::jinja
