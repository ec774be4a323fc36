// GPT-2's reversible byte <-> printable character table for byte-level BPE.
//
// Every byte maps to one printable code point (printable Latin-1 bytes map to
// themselves, the others to U+0100 onwards in byte order), so any byte string
// becomes a string of vocabulary characters and back.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace qllm::byte_level {

// UTF-8 of the character that stands for byte `b`.
std::string_view char_of(uint8_t b);

// The byte a character stands for, or -1 if it is not in the table.
int byte_of(char32_t c);

// Appends the character form of every byte of `bytes`.
void encode(std::string_view bytes, std::string& out);

// Appends the bytes a token's characters stand for. If a character is not in
// the table the token's own bytes are appended instead (as Hugging Face does
// for added tokens such as "<|im_start|>" or runs of spaces).
void decode_token(std::string_view token, std::string& out);

}  // namespace qllm::byte_level
