// "Did you mean" suggestions for misspelt names (configuration keys, ...).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace qllm {

// Levenshtein distance (insertions, deletions, substitutions).
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `word` within `max_distance` edits (the first on
// ties), or "" when none is that close.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates,
                          size_t max_distance = 3);

}  // namespace qllm
