// qllm tokenize: ids of the UTF-8 text on stdin (all of it, bytes as read: a
// trailing newline is part of the text), space-separated on one line.
#include "engine/cli/commands.h"
#include "engine/common/error.h"
#include "engine/model/builtin.h"
#include "engine/tokenizer/tokenizer.h"

#include <fmt/format.h>

#include <iostream>
#include <iterator>
#include <sstream>

namespace qllm::cli {

Run add_tokenize(CLI::App& app) {
  struct Opts {
    std::string tokenizer;
    bool add_special = false, decode = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--tokenizer", o->tokenizer,
                 "a tokenizer.json file or a checkpoint folder (or builtin:tiny-mixtral, ...)")
      ->required();
  app.add_flag("--add-special", o->add_special, "add the special tokens the tokenizer adds (e.g. <s>)");
  app.add_flag("--decode", o->decode, "read space-separated ids and print their text instead");
  return [o]() -> int {
    const auto tok = Tokenizer::from_file(resolve_model_path(o->tokenizer));
    std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    if (o->decode) {
      std::istringstream in(input);
      std::vector<int32_t> ids;
      std::string word;
      while (in >> word) {
        try {
          size_t used = 0;
          const long v = std::stol(word, &used);
          if (used != word.size()) throw std::invalid_argument(word);
          ids.push_back(int32_t(v));
        } catch (const std::exception&) {
          throw qllm::Error(fmt::format("--decode: '{}' is not a token id", word));
        }
      }
      std::cout << tok.decode(ids, /*skip_special=*/!o->add_special) << std::flush;
      return 0;
    }
    const auto ids = tok.encode(input, o->add_special);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::cout << line << "\n";
    return 0;
  };
}

}  // namespace qllm::cli
