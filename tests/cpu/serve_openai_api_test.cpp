// The OpenAI-compatible request bodies: parsing and its errors (status, param,
// message) and length checks. Responses and stop strings:
// serve_openai_responses_test.cpp.
#include "engine/serve/openai_api.h"

#include "tests/test_errors.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace qllm::serve {
namespace {

using nlohmann::json;
using sched::PriorityClass;

ApiLimits test_limits() {
  ApiLimits l;
  l.model_names = {"tiny", "tiny-chat"};
  l.max_model_len = 128;
  l.vocab = 1000;
  l.ls_max_priority = 0;
  l.default_temperature = 0.7;
  l.default_top_p = 0.9;
  l.default_top_k = 20;
  l.default_max_tokens = 64;
  l.default_seed = 7;
  return l;
}

GenerationRequest comp(const std::string& body, const ApiLimits& l = test_limits()) {
  return parse_request(Endpoint::Completions, body, l);
}
GenerationRequest chat(const std::string& body, const ApiLimits& l = test_limits()) {
  return parse_request(Endpoint::ChatCompletions, body, l);
}

// The ApiError f throws (a test failure, and status 0, when it throws none).
template <typename F>
ApiError api_error_of(F&& f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError thrown";
  return ApiError(0, "");
}

// A 400 for `body` naming `param`, with `needle` in its message.
void expect_bad(Endpoint ep, const std::string& body, const std::string& param,
                const std::string& needle) {
  SCOPED_TRACE(body);
  const ApiError e = api_error_of([&] { parse_request(ep, body, test_limits()); });
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.type, "invalid_request_error");
  EXPECT_EQ(e.param, param);
  EXPECT_EQ(e.code, "");
  EXPECT_HAS(std::string(e.what()), needle);
}
void comp_bad(const std::string& body, const std::string& param, const std::string& needle) {
  expect_bad(Endpoint::Completions, body, param, needle);
}
void chat_bad(const std::string& body, const std::string& param, const std::string& needle) {
  expect_bad(Endpoint::ChatCompletions, body, param, needle);
}

// ---- ApiError and error bodies -------------------------------------------

TEST(ApiError, TypeFollowsStatusUnlessGiven) {
  EXPECT_EQ(ApiError(400, "m").type, "invalid_request_error");
  EXPECT_EQ(ApiError(404, "m").type, "not_found_error");
  EXPECT_EQ(ApiError(429, "m").type, "rate_limit_error");
  EXPECT_EQ(ApiError(503, "m").type, "server_error");
  EXPECT_EQ(ApiError(400, "m", "p", "custom_error").type, "custom_error");
  const ApiError e(400, "the message", "temperature");
  EXPECT_STREQ(e.what(), "the message");
  EXPECT_EQ(e.param, "temperature");
}

TEST(ApiError, ErrorBodyHasNullParamAndCodeWhenEmpty) {
  EXPECT_EQ(error_body(ApiError(400, "bad")),
            json::parse(R"({"error": {"message": "bad", "type": "invalid_request_error",
                                      "param": null, "code": null}})"));
  EXPECT_EQ(error_body(ApiError(404, "gone", "model", "not_found_error", "model_not_found")),
            json::parse(R"({"error": {"message": "gone", "type": "not_found_error",
                                      "param": "model", "code": "model_not_found"}})"));
}

// ---- the body ----------------------------------------------------------

TEST(ParseBody, InvalidJsonNamesThePosition) {
  const ApiError e = api_error_of([] { comp(R"({"prompt": "hi",)"); });
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "");
  const std::string msg = e.what();
  EXPECT_HAS(msg, "not valid JSON");
  EXPECT_HAS(msg, "line 1, column 17");
  EXPECT_EQ(msg.find("[json.exception"), std::string::npos) << msg;
}

TEST(ParseBody, EmptyBodyAndInvalidUtf8AreParseErrors) {
  EXPECT_HAS(std::string(api_error_of([] { comp(""); }).what()), "not valid JSON");
  const ApiError e = api_error_of([] { comp("{\"prompt\": \"a\xff\"}"); });
  EXPECT_EQ(e.status, 400);
  EXPECT_HAS(std::string(e.what()), "not valid JSON");
}

TEST(ParseBody, NotAnObject) {
  for (const char* body : {"[1, 2]", "\"text\"", "null", "42"}) {
    const ApiError e = api_error_of([&] { comp(body); });
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_HAS(std::string(e.what()), "must be a JSON object");
  }
}

TEST(ParseBody, DeepNestingIsRefusedWithoutCrashing) {
  const auto nested = [](int levels) {
    return std::string(static_cast<size_t>(levels), '[') +
           std::string(static_cast<size_t>(levels), ']');
  };
  EXPECT_HAS(std::string(api_error_of([&] { comp(nested(100000)); }).what()),
             "nested more than 64 levels deep");
  // Deep anywhere, even in a field that would be ignored or in a message.
  comp_bad(R"({"prompt": "x", "extra": )" + nested(100000) + "}", "", "nested more than 64");
  chat_bad(R"({"messages": [{"role": "user", "content": "x", "name": )" + nested(100000) + "}]}",
           "", "nested more than 64");
  // 64 levels (the body object and 63 arrays) are fine.
  EXPECT_EQ(comp(R"({"prompt": "x", "extra": )" + nested(63) + "}").prompt_text, "x");
  comp_bad(R"({"prompt": "x", "extra": )" + nested(64) + "}", "", "nested more than 64");
}

TEST(ParseBody, UnknownFieldsAreIgnored) {
  const auto r = comp(R"({"prompt": "hi", "user": "u1", "frequency_penalty": 0.5,
                          "presence_penalty": 1, "logit_bias": {"5": 10}, "whatever": [1, {}]})");
  EXPECT_EQ(r.prompt_text, "hi");
}

// ---- model -------------------------------------------------------------

TEST(ParseModel, MissingOrNullGivesTheFirstName) {
  EXPECT_EQ(comp(R"({"prompt": "hi"})").model, "tiny");
  EXPECT_EQ(comp(R"({"prompt": "hi", "model": null})").model, "tiny");
  EXPECT_EQ(comp(R"({"prompt": "hi", "model": "tiny-chat"})").model, "tiny-chat");
}

TEST(ParseModel, UnknownModelIs404ListingServedNames) {
  const ApiError e = api_error_of([] { comp(R"({"prompt": "hi", "model": "gpt-4"})"); });
  EXPECT_EQ(e.status, 404);
  EXPECT_EQ(e.type, "not_found_error");
  EXPECT_EQ(e.code, "model_not_found");
  EXPECT_EQ(e.param, "model");
  const std::string msg = e.what();
  EXPECT_HAS(msg, "'gpt-4'");
  EXPECT_HAS(msg, "tiny, tiny-chat");
  EXPECT_EQ(error_body(e)["error"]["code"], "model_not_found");
}

TEST(ParseModel, NearMissSuggestsAName) {
  const ApiError e = api_error_of([] { comp(R"({"prompt": "hi", "model": "tiny-chta"})"); });
  EXPECT_EQ(e.status, 404);
  EXPECT_HAS(std::string(e.what()), "did you mean 'tiny-chat'?");
}

TEST(ParseModel, ModelIsCheckedBeforeTheRest) {
  // Unknown model with an otherwise bad body: the 404 is what matters.
  EXPECT_EQ(api_error_of([] { comp(R"({"model": "nope", "temperature": 9})"); }).status, 404);
}

TEST(ParseModel, NonStringModel) {
  comp_bad(R"({"prompt": "hi", "model": 3})", "model", "'model' must be a string, got 3");
}

// ---- completions prompt ------------------------------------------------

TEST(ParsePrompt, StringPrompt) {
  const auto r = comp(R"({"prompt": "Once upon a time"})");
  EXPECT_EQ(r.endpoint, Endpoint::Completions);
  ASSERT_TRUE(r.prompt_text.has_value());
  EXPECT_EQ(*r.prompt_text, "Once upon a time");
  EXPECT_TRUE(r.prompt_ids.empty());
  EXPECT_TRUE(r.messages.empty());
}

TEST(ParsePrompt, ListOfOneString) {
  const auto r = comp(R"({"prompt": ["only one"]})");
  EXPECT_EQ(r.prompt_text, "only one");
  EXPECT_TRUE(r.prompt_ids.empty());
}

TEST(ParsePrompt, TokenIds) {
  const auto r = comp(R"({"prompt": [1, 0, 999, 42]})");
  EXPECT_FALSE(r.prompt_text.has_value());
  EXPECT_EQ(r.prompt_ids, (std::vector<int32_t>{1, 0, 999, 42}));
  // A list of one token list is the same prompt.
  EXPECT_EQ(comp(R"({"prompt": [[5, 6]]})").prompt_ids, (std::vector<int32_t>{5, 6}));
}

TEST(ParsePrompt, TokenIdsWithUnknownVocabCheckOnlyInt32) {
  ApiLimits l = test_limits();
  l.vocab = 0;
  EXPECT_EQ(comp(R"({"prompt": [2147483647]})", l).prompt_ids,
            (std::vector<int32_t>{2147483647}));
  EXPECT_EQ(api_error_of([&] { comp(R"({"prompt": [2147483648]})", l); }).param, "prompt");
}

TEST(ParsePrompt, Errors) {
  comp_bad(R"({})", "prompt", "'prompt' is required");
  comp_bad(R"({"prompt": null})", "prompt", "'prompt' is required");
  comp_bad(R"({"prompt": ""})", "prompt", "'prompt' must not be empty");
  comp_bad(R"({"prompt": []})", "prompt", "'prompt' must not be empty");
  comp_bad(R"({"prompt": [""]})", "prompt", "'prompt' must not be empty");
  comp_bad(R"({"prompt": [[]]})", "prompt", "'prompt' must not be empty");
  comp_bad(R"({"prompt": 12})", "prompt",
           "'prompt' must be a string, a list of one string, or a list of token ids, got 12");
  comp_bad(R"({"prompt": {"text": "x"}})", "prompt", "'prompt' must be a string");
  comp_bad(R"({"prompt": ["a", "b"]})", "prompt", "batch prompts are not supported");
  comp_bad(R"({"prompt": [[1], [2]]})", "prompt", "batch prompts are not supported");
  comp_bad(R"({"prompt": [1, 1000]})", "prompt",
           "'prompt[1]' must be a token id, an integer in [0, 999], got 1000");
  comp_bad(R"({"prompt": [-1]})", "prompt", "'prompt[0]' must be a token id");
  comp_bad(R"({"prompt": [1.5]})", "prompt", "got 1.5");
  comp_bad(R"({"prompt": [1, "a"]})", "prompt", "'prompt[1]' must be a token id");
  comp_bad(R"({"prompt": [18446744073709551615]})", "prompt", "'prompt[0]' must be a token id");
  comp_bad(R"({"prompt": [[1, 5000]]})", "prompt", "'prompt[1]' must be a token id");
}

TEST(ParsePrompt, LongValuesAreCutShortInMessages) {
  const std::string big(500, 'x');
  const ApiError e =
      api_error_of([&] { comp(R"({"prompt": "a", "temperature": ")" + big + "\"}"); });
  EXPECT_LT(std::string(e.what()).size(), 200u);
  EXPECT_HAS(std::string(e.what()), "...");
}

TEST(ParsePrompt, EachEndpointIgnoresTheOthersInput) {
  // Completions ignores "messages"; chat ignores "prompt".
  comp_bad(R"({"messages": [{"role": "user", "content": "hi"}]})", "prompt",
           "'prompt' is required");
  chat_bad(R"({"prompt": "hi"})", "messages", "'messages' is required");
}

// ---- chat messages -----------------------------------------------------

TEST(ParseMessages, HappyPath) {
  const auto r = chat(R"({"model": "tiny-chat", "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi", "name": "ann"},
      {"role": "assistant", "content": ""},
      {"role": "tool", "content": "42", "tool_call_id": "c1"}]})");
  EXPECT_EQ(r.endpoint, Endpoint::ChatCompletions);
  EXPECT_EQ(r.model, "tiny-chat");
  EXPECT_FALSE(r.prompt_text.has_value());
  EXPECT_TRUE(r.prompt_ids.empty());
  EXPECT_TRUE(r.add_generation_prompt);
  const auto expected = nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi", "name": "ann"},
      {"role": "assistant", "content": ""},
      {"role": "tool", "content": "42", "tool_call_id": "c1"}])");
  EXPECT_EQ(r.messages, expected);
  // role and content come first, for templates and logs alike.
  EXPECT_EQ(r.messages[1].begin().key(), "role");
}

TEST(ParseMessages, TextPartsAreJoinedIntoOneString) {
  const auto r = chat(R"({"messages": [{"role": "user", "content": [
      {"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}]})");
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0]["content"], "first\nsecond");
  EXPECT_TRUE(r.messages[0]["content"].is_string());
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": []}]})").messages[0]["content"], "");
}

TEST(ParseMessages, AddGenerationPrompt) {
  const std::string msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  EXPECT_FALSE(chat("{" + msgs + R"(, "add_generation_prompt": false})").add_generation_prompt);
  EXPECT_TRUE(chat("{" + msgs + R"(, "add_generation_prompt": null})").add_generation_prompt);
  chat_bad("{" + msgs + R"(, "add_generation_prompt": 1})", "add_generation_prompt",
           "'add_generation_prompt' must be true or false, got 1");
}

TEST(ParseMessages, Errors) {
  chat_bad(R"({})", "messages", "'messages' is required");
  chat_bad(R"({"messages": []})", "messages", "'messages' must be a non-empty array");
  chat_bad(R"({"messages": "hi"})", "messages", "got \"hi\"");
  chat_bad(R"({"messages": ["hi"]})", "messages[0]", "'messages[0]' must be an object, got \"hi\"");
  chat_bad(R"({"messages": [{"content": "hi"}]})", "messages[0].role",
           "'messages[0].role' must be one of system, user, assistant, tool; got nothing");
  chat_bad(R"({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]})",
           "messages[1].role", "got \"robot\"");
  chat_bad(R"({"messages": [{"role": 1, "content": "b"}]})", "messages[0].role", "got 1");
  chat_bad(R"({"messages": [{"role": "user"}]})", "messages[0].content",
           "'messages[0].content' is required");
  chat_bad(R"({"messages": [{"role": "user", "content": null}]})", "messages[0].content",
           "'messages[0].content' must be a string or an array of text parts, got null");
  chat_bad(R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content", "got 5");
  chat_bad(R"({"messages": [{"role": "user", "content": ["x"]}]})", "messages[0].content",
           "'messages[0].content[0]' must be an object");
  chat_bad(R"({"messages": [{"role": "user",
                              "content": [{"type": "image_url", "image_url": {}}]}]})",
           "messages[0].content",
           "'messages[0].content[0].type' must be \"text\" (only text content is supported), got "
           "\"image_url\"");
  chat_bad(R"({"messages": [{"role": "user", "content": [{"text": "x"}]}]})",
           "messages[0].content", "'messages[0].content[0].type' must be \"text\"");
  chat_bad(R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})",
           "messages[0].content", "'messages[0].content[0].text' must be a string, got nothing");
  chat_bad(R"({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]})",
           "messages[0].content", "'messages[0].content[0].text' must be a string, got 3");
}

// ---- max_tokens --------------------------------------------------------

TEST(ParseMaxTokens, AbsentOrNullIsNullopt) {
  EXPECT_FALSE(comp(R"({"prompt": "a"})").max_tokens.has_value());
  EXPECT_FALSE(comp(R"({"prompt": "a", "max_tokens": null})").max_tokens.has_value());
  EXPECT_EQ(comp(R"({"prompt": "a", "max_tokens": 10})").max_tokens, 10);
  EXPECT_EQ(comp(R"({"prompt": "a", "max_tokens": 1})").max_tokens, 1);
}

TEST(ParseMaxTokens, ChatAcceptsMaxCompletionTokensWhichWins) {
  const std::string m = R"("messages": [{"role": "user", "content": "hi"}])";
  EXPECT_EQ(chat("{" + m + R"(, "max_tokens": 9})").max_tokens, 9);
  EXPECT_EQ(chat("{" + m + R"(, "max_completion_tokens": 11})").max_tokens, 11);
  EXPECT_EQ(chat("{" + m + R"(, "max_tokens": 9, "max_completion_tokens": 11})").max_tokens, 11);
  EXPECT_EQ(chat("{" + m + R"(, "max_tokens": 9, "max_completion_tokens": null})").max_tokens, 9);
  chat_bad("{" + m + R"(, "max_completion_tokens": 0})", "max_completion_tokens",
           "'max_completion_tokens' must be an integer >= 1, got 0");
  // Completions has no max_completion_tokens: ignored like any unknown field.
  EXPECT_FALSE(comp(R"({"prompt": "a", "max_completion_tokens": 5})").max_tokens.has_value());
}

TEST(ParseMaxTokens, Errors) {
  comp_bad(R"({"prompt": "a", "max_tokens": 0})", "max_tokens",
           "'max_tokens' must be an integer >= 1, got 0");
  comp_bad(R"({"prompt": "a", "max_tokens": -3})", "max_tokens", "got -3");
  comp_bad(R"({"prompt": "a", "max_tokens": 2.5})", "max_tokens", "got 2.5");
  comp_bad(R"({"prompt": "a", "max_tokens": "10"})", "max_tokens", "got \"10\"");
  comp_bad(R"({"prompt": "a", "max_tokens": 18446744073709551615})", "max_tokens",
           "'max_tokens' must be an integer >= 1");
}

// ---- sampling and the other fields --------------------------------------

TEST(ParseSampling, DefaultsComeFromTheLimits) {
  const auto r = comp(R"({"prompt": "a"})");
  EXPECT_DOUBLE_EQ(r.temperature, 0.7);
  EXPECT_DOUBLE_EQ(r.top_p, 0.9);
  EXPECT_EQ(r.top_k, 20);
  EXPECT_EQ(r.seed, 7u);
  EXPECT_TRUE(r.stop.empty());
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_FALSE(r.ignore_eos);
  EXPECT_EQ(r.priority, 0);
  EXPECT_EQ(r.cls, PriorityClass::LS);
  // null is the same as absent.
  const auto n = comp(R"({"prompt": "a", "temperature": null, "top_p": null, "top_k": null,
                          "seed": null, "stop": null, "stream": null, "ignore_eos": null,
                          "priority": null, "n": null, "best_of": null})");
  EXPECT_DOUBLE_EQ(n.temperature, 0.7);
  EXPECT_DOUBLE_EQ(n.top_p, 0.9);
  EXPECT_EQ(n.top_k, 20);
  EXPECT_EQ(n.seed, 7u);
  EXPECT_FALSE(n.stream);
}

TEST(ParseSampling, Values) {
  const auto r = comp(R"({"prompt": "a", "temperature": 1.3, "top_p": 0.5, "top_k": 40,
                          "seed": 123, "ignore_eos": true, "priority": 5})");
  EXPECT_DOUBLE_EQ(r.temperature, 1.3);
  EXPECT_DOUBLE_EQ(r.top_p, 0.5);
  EXPECT_EQ(r.top_k, 40);
  EXPECT_EQ(r.seed, 123u);
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_EQ(r.priority, 5);
  EXPECT_EQ(r.cls, PriorityClass::BE);
}

TEST(ParseSampling, Temperature) {
  EXPECT_DOUBLE_EQ(comp(R"({"prompt": "a", "temperature": 0})").temperature, 0.0);
  EXPECT_DOUBLE_EQ(comp(R"({"prompt": "a", "temperature": 2})").temperature, 2.0);
  EXPECT_DOUBLE_EQ(comp(R"({"prompt": "a", "temperature": 1})").temperature, 1.0);
  comp_bad(R"({"prompt": "a", "temperature": 3.5})", "temperature",
           "'temperature' must be a number in [0, 2], got 3.5");
  comp_bad(R"({"prompt": "a", "temperature": -0.1})", "temperature", "got -0.1");
  comp_bad(R"({"prompt": "a", "temperature": "hot"})", "temperature", "got \"hot\"");
  comp_bad(R"({"prompt": "a", "temperature": true})", "temperature", "got true");
}

TEST(ParseSampling, TopP) {
  EXPECT_DOUBLE_EQ(comp(R"({"prompt": "a", "top_p": 1})").top_p, 1.0);
  EXPECT_DOUBLE_EQ(comp(R"({"prompt": "a", "top_p": 0.01})").top_p, 0.01);
  comp_bad(R"({"prompt": "a", "top_p": 0})", "top_p", "'top_p' must be a number in (0, 1], got 0");
  comp_bad(R"({"prompt": "a", "top_p": 1.5})", "top_p", "got 1.5");
  comp_bad(R"({"prompt": "a", "top_p": -1})", "top_p", "got -1");
}

TEST(ParseSampling, TopKMinusOneAndZeroMeanOff) {
  EXPECT_EQ(comp(R"({"prompt": "a", "top_k": -1})").top_k, 0);
  EXPECT_EQ(comp(R"({"prompt": "a", "top_k": 0})").top_k, 0);
  EXPECT_EQ(comp(R"({"prompt": "a", "top_k": 1})").top_k, 1);
  comp_bad(R"({"prompt": "a", "top_k": -2})", "top_k",
           "'top_k' must be -1 or 0 (off) or an integer >= 1, got -2");
  comp_bad(R"({"prompt": "a", "top_k": 1.5})", "top_k", "got 1.5");
}

TEST(ParseSampling, Seed) {
  EXPECT_EQ(comp(R"({"prompt": "a", "seed": 0})").seed, 0u);
  EXPECT_EQ(comp(R"({"prompt": "a", "seed": 18446744073709551615})").seed, UINT64_MAX);
  comp_bad(R"({"prompt": "a", "seed": -1})", "seed", "'seed' must be an integer >= 0, got -1");
  comp_bad(R"({"prompt": "a", "seed": 1.5})", "seed", "got 1.5");
  comp_bad(R"({"prompt": "a", "seed": "1"})", "seed", "got \"1\"");
}

TEST(ParseSampling, Stop) {
  EXPECT_EQ(comp(R"({"prompt": "a", "stop": "\n"})").stop, (std::vector<std::string>{"\n"}));
  EXPECT_EQ(comp(R"({"prompt": "a", "stop": ["x", "yz", "w", "v"]})").stop,
            (std::vector<std::string>{"x", "yz", "w", "v"}));
  EXPECT_TRUE(comp(R"({"prompt": "a", "stop": []})").stop.empty());
  comp_bad(R"({"prompt": "a", "stop": ["1", "2", "3", "4", "5"]})", "stop",
           "'stop' must be a string or an array of at most 4 non-empty strings");
  comp_bad(R"({"prompt": "a", "stop": [1]})", "stop", "got [1]");
  comp_bad(R"({"prompt": "a", "stop": 1})", "stop", "got 1");
  comp_bad(R"({"prompt": "a", "stop": ""})", "stop", "got an empty string");
  comp_bad(R"({"prompt": "a", "stop": ["x", ""]})", "stop", "got an empty string");
}

TEST(ParseSampling, StreamAndStreamOptions) {
  EXPECT_TRUE(comp(R"({"prompt": "a", "stream": true})").stream);
  EXPECT_FALSE(comp(R"({"prompt": "a", "stream": true})").include_usage);
  const auto u =
      comp(R"({"prompt": "a", "stream": true, "stream_options": {"include_usage": true}})");
  EXPECT_TRUE(u.stream);
  EXPECT_TRUE(u.include_usage);
  EXPECT_FALSE(comp(R"({"prompt": "a", "stream": true, "stream_options": {}})").include_usage);
  EXPECT_FALSE(comp(R"({"prompt": "a", "stream_options": null})").include_usage);
  comp_bad(R"({"prompt": "a", "stream": "yes"})", "stream",
           "'stream' must be true or false, got \"yes\"");
  comp_bad(R"({"prompt": "a", "stream_options": {"include_usage": true}})", "stream_options",
           "'stream_options' is only allowed when 'stream' is true");
  comp_bad(R"({"prompt": "a", "stream": false, "stream_options": {}})", "stream_options",
           "only allowed when 'stream' is true");
  comp_bad(R"({"prompt": "a", "stream": true, "stream_options": true})", "stream_options",
           "'stream_options' must be an object, got true");
  comp_bad(R"({"prompt": "a", "stream": true, "stream_options": {"include_usage": "y"}})",
           "stream_options.include_usage", "'stream_options.include_usage' must be true or false");
}

TEST(ParseSampling, IgnoreEos) {
  EXPECT_TRUE(comp(R"({"prompt": "a", "ignore_eos": true})").ignore_eos);
  comp_bad(R"({"prompt": "a", "ignore_eos": 1})", "ignore_eos",
           "'ignore_eos' must be true or false");
}

TEST(ParsePriority, ClassFollowsLsMaxPriority) {
  EXPECT_EQ(comp(R"({"prompt": "a", "priority": -5})").cls, PriorityClass::LS);
  EXPECT_EQ(comp(R"({"prompt": "a", "priority": -5})").priority, -5);
  EXPECT_EQ(comp(R"({"prompt": "a", "priority": 0})").cls, PriorityClass::LS);
  EXPECT_EQ(comp(R"({"prompt": "a", "priority": 1})").cls, PriorityClass::BE);
  ApiLimits l = test_limits();
  l.ls_max_priority = 2;
  EXPECT_EQ(comp(R"({"prompt": "a", "priority": 2})", l).cls, PriorityClass::LS);
  EXPECT_EQ(comp(R"({"prompt": "a", "priority": 3})", l).cls, PriorityClass::BE);
  comp_bad(R"({"prompt": "a", "priority": 1.5})", "priority",
           "'priority' must be an integer, got 1.5");
  comp_bad(R"({"prompt": "a", "priority": "high"})", "priority", "got \"high\"");
}

TEST(ParsePriority, ClassOfPriority) {
  EXPECT_EQ(class_of_priority(0, 0), PriorityClass::LS);
  EXPECT_EQ(class_of_priority(1, 0), PriorityClass::BE);
  EXPECT_EQ(class_of_priority(-100, -50), PriorityClass::LS);
  EXPECT_EQ(class_of_priority(-49, -50), PriorityClass::BE);
}

// ---- unsupported options -----------------------------------------------

TEST(ParseUnsupported, NMustBeOne) {
  EXPECT_EQ(comp(R"({"prompt": "a", "n": 1})").prompt_text, "a");
  comp_bad(R"({"prompt": "a", "n": 2})", "n",
           "'n' must be 1 (several choices per request are not supported), got 2");
  comp_bad(R"({"prompt": "a", "n": 0})", "n", "got 0");
  comp_bad(R"({"prompt": "a", "n": 1.0})", "n", "'n' must be 1");
}

TEST(ParseUnsupported, RefusedWhenSet) {
  comp_bad(R"({"prompt": "a", "logprobs": 5})", "logprobs", "'logprobs' is not supported");
  comp_bad(R"({"prompt": "a", "logprobs": 0})", "logprobs", "not supported");
  chat_bad(R"({"messages": [{"role": "user", "content": "a"}], "logprobs": true})", "logprobs",
           "'logprobs' is not supported");
  chat_bad(R"({"messages": [{"role": "user", "content": "a"}], "top_logprobs": 2})",
           "top_logprobs", "'top_logprobs' is not supported");
  comp_bad(R"({"prompt": "a", "echo": true})", "echo", "'echo' is not supported");
  comp_bad(R"({"prompt": "a", "suffix": "end"})", "suffix", "'suffix' is not supported");
  chat_bad(R"({"messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function"}]})",
           "tools", "'tools' is not supported");
  comp_bad(R"({"prompt": "a", "best_of": 2})", "best_of", "'best_of' > 1 is not supported");
  comp_bad(R"({"prompt": "a", "best_of": 0})", "best_of",
           "'best_of' must be an integer >= 1, got 0");
}

TEST(ParseUnsupported, AcceptedWhenOff) {
  EXPECT_NO_THROW(comp(R"({"prompt": "a", "logprobs": null, "echo": false, "suffix": null,
                           "best_of": 1, "tools": null})"));
  EXPECT_NO_THROW(comp(R"({"prompt": "a", "suffix": "", "tools": []})"));
  EXPECT_NO_THROW(chat(R"({"messages": [{"role": "user", "content": "a"}], "logprobs": false,
                           "top_logprobs": 0, "tool_choice": "none"})"));
}

// ---- check_length ------------------------------------------------------

TEST(CheckLength, DefaultIsTheSmallerOfDefaultAndRoomLeft) {
  const ApiLimits l = test_limits();  // max_model_len 128, default_max_tokens 64
  const auto r = comp(R"({"prompt": "a"})");
  EXPECT_EQ(check_length(r, 10, l), 64);
  EXPECT_EQ(check_length(r, 64, l), 64);
  EXPECT_EQ(check_length(r, 100, l), 28);
  EXPECT_EQ(check_length(r, 127, l), 1);
  EXPECT_EQ(check_length(r, 0, l), 64);
}

TEST(CheckLength, ExplicitMaxTokensMustFit) {
  const ApiLimits l = test_limits();
  const auto r = comp(R"({"prompt": "a", "max_tokens": 28})");
  EXPECT_EQ(check_length(r, 100, l), 28);
  const auto big = comp(R"({"prompt": "a", "max_tokens": 29})");
  const ApiError e = api_error_of([&] { check_length(big, 100, l); });
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "max_tokens");
  const std::string msg = e.what();
  EXPECT_HAS(msg, "maximum context length is 128 tokens");
  EXPECT_HAS(msg, "100 tokens");
  EXPECT_HAS(msg, "asks for 29");
  EXPECT_HAS(msg, "'max_tokens' must be at most 28");
  // No overflow with a huge max_tokens.
  const auto huge = comp(R"({"prompt": "a", "max_tokens": 9223372036854775807})");
  EXPECT_EQ(api_error_of([&] { check_length(huge, 100, l); }).param, "max_tokens");
}

TEST(CheckLength, PromptThatLeavesNoRoomNamesPromptOrMessages) {
  const ApiLimits l = test_limits();
  const ApiError e = api_error_of([&] { check_length(comp(R"({"prompt": "a"})"), 128, l); });
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "prompt");
  const std::string msg = e.what();
  EXPECT_HAS(msg, "maximum context length is 128 tokens");
  EXPECT_HAS(msg, "'prompt' takes 128 tokens");
  EXPECT_HAS(msg, "'max_tokens' (64)");
  EXPECT_HAS(msg, "at most 127 tokens");

  const auto c = chat(R"({"messages": [{"role": "user", "content": "a"}], "max_tokens": 5})");
  const ApiError ce = api_error_of([&] { check_length(c, 200, l); });
  EXPECT_EQ(ce.param, "messages");
  EXPECT_HAS(std::string(ce.what()), "'messages' takes 200 tokens");
  EXPECT_HAS(std::string(ce.what()), "'max_tokens' (5)");
}

}  // namespace
}  // namespace qllm::serve
