// Tokens and syntax tree of a chat template (a Jinja2 subset).
//
// lex() turns the source into text and tag tokens, applying Jinja2's whitespace
// rules (trim_blocks, lstrip_blocks, `-`/`+` markers, newline normalisation);
// parse() builds the Program the evaluator runs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tokenizer/chat_template_value.h"

namespace qllm::jinja {

[[noreturn]] void syntax_error(int line, std::string message);  // throws ChatTemplateError

enum class TokKind : std::uint8_t {
  Text,        // template data between tags, whitespace control applied
  BlockBegin,  // {%
  BlockEnd,    // %}
  VarBegin,    // {{
  VarEnd,      // }}
  Name,
  String,  // text: the unescaped value
  Int,     // ival
  Float,   // fval
  Op,      // text: + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { }
  Eof,
};

struct Token {
  TokKind kind;
  int line;
  std::string text;
  std::int64_t ival = 0;
  double fval = 0.0;
};

std::vector<Token> lex(const std::string& source);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind : std::uint8_t {
    Literal,  // value
    Name,     // name
    List,     // args: items
    Tuple,    // args: items (a list at run time)
    Dict,     // args: key, value, key, value, ...
    Attr,     // args[0].name
    Item,     // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]] (null parts absent)
    Call,     // args[0](args[1..], kwargs)
    Filter,   // args[0] | name(args[1..], kwargs)
    Test,     // args[0] is [not] name(args[1..], kwargs)
    Unary,    // name: "-", "+" or "not"; args[0]
    Binary,   // name: + - * / // % ** ~ ; args[0], args[1]
    And,
    Or,
    Compare,  // args[0] ops[0] args[1] ops[1] args[2] ...
    Cond,     // args[1] if args[0] else args[2] (args[2] may be null)
  };
  Kind kind;
  int line;
  std::shared_ptr<const Json> value;  // Literal
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;

  Expr(Kind k, int l) : kind(k), line(l) {}
};

struct Node;
using Body = std::vector<Node>;

struct Node {
  enum class Kind : std::uint8_t {
    Text,      // text
    Output,    // {{ expr }}
    If,        // branches: (condition, body); the else branch has a null condition
    For,       // for targets in expr [if cond]: body [else: else_body]
    Set,       // set targets = expr, or set targets[0].attr = expr
    SetBlock,  // set targets[0] %}body{% endset
    Break,
    Continue,
    Scope,  // body rendered in place ({% generation %})
  };
  Kind kind;
  int line;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::string> targets;
  std::string attr;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;

  Node(Kind k, int l) : kind(k), line(l) {}
};

struct Program {
  Body body;
};

std::unique_ptr<Program> parse(const std::string& source);
std::string render_program(const Program& program, const Json& context);

// Reads the arguments of a filter, test, method or function by position or
// keyword against its parameter names; fails on unknown or extra arguments.
class ArgReader {
 public:
  ArgReader(const Args& args, std::string what, std::vector<std::string_view> params);
  const Value* get(std::size_t i) const;  // nullptr when not given
  // Absent or None gives nullopt; anything but a string fails.
  std::optional<std::string> opt_string(std::size_t i) const;
  std::string string_or(std::size_t i, const std::string& dflt) const;
  std::int64_t int_or(std::size_t i, std::int64_t dflt) const;
  bool truthy_or(std::size_t i, bool dflt) const;

 private:
  std::string what_;
  std::vector<const Value*> slots_;
};

// Built-ins (chat_template_builtins.cpp, chat_template_methods.cpp). They fail
// with EvalFailure; the evaluator adds the line.
// Whether Jinja2 (as transformers sets it up) knows the filter or test; the
// ones it knows but this engine lacks fail as "unsupported" when they run.
bool is_jinja_filter(const std::string& name);
bool is_jinja_test(const std::string& name);
Value apply_filter(const std::string& name, const Value& subject, const Args& args);
bool apply_test(const std::string& name, const Value& subject, const Args& args);
Value call_method(const Value& object, const std::string& name, const Args& args);
// Functions named in the template: raise_exception, namespace, range, dict.
Value call_global(const std::string& name, const Args& args, int line);
// obj.name (attribute first, then key) and obj[key] (key first), as Jinja2's
// sandbox resolves them; what is missing is undefined. `desc` names obj for
// messages ("message.content"); it is only called when one is needed.
using Describe = std::function<std::string()>;
Value get_attr(const Value& obj, const std::string& name, const Describe& desc);
Value get_item(const Value& obj, const Value& key, const Describe& desc);

}  // namespace qllm::jinja
