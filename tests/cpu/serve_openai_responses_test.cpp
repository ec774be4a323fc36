// The OpenAI-compatible responses: whole responses, stream chunks, the usage
// chunk, SSE framing, the model list; and stop strings over streamed text.
#include "engine/serve/openai_api.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace qllm::serve {
namespace {

using nlohmann::json;

// ---- responses ---------------------------------------------------------

TEST(Responses, Usage) {
  EXPECT_EQ(usage_json({5, 3}),
            json::parse(R"({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})"));
}

TEST(Responses, CompletionResponse) {
  EXPECT_EQ(completion_response(Endpoint::Completions, "cmpl-1", 1700000000, "tiny", "hello",
                                std::string("stop"), {4, 2}),
            json::parse(R"({"id": "cmpl-1", "object": "text_completion", "created": 1700000000,
                            "model": "tiny",
                            "choices": [{"index": 0, "text": "hello", "logprobs": null,
                                         "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 4, "completion_tokens": 2,
                                      "total_tokens": 6}})"));
}

TEST(Responses, ChatResponse) {
  EXPECT_EQ(completion_response(Endpoint::ChatCompletions, "chatcmpl-1", 5, "tiny-chat", "hi!",
                                std::string("length"), {10, 3}),
            json::parse(R"({"id": "chatcmpl-1", "object": "chat.completion", "created": 5,
                            "model": "tiny-chat",
                            "choices": [{"index": 0,
                                         "message": {"role": "assistant", "content": "hi!"},
                                         "logprobs": null, "finish_reason": "length"}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 3,
                                      "total_tokens": 13}})"));
  const auto open =
      completion_response(Endpoint::ChatCompletions, "x", 0, "m", "", std::nullopt, {});
  EXPECT_TRUE(open["choices"][0]["finish_reason"].is_null());
}

TEST(Responses, CompletionStreamChunk) {
  EXPECT_EQ(stream_chunk(Endpoint::Completions, "cmpl-2", 9, "tiny", "wor", std::nullopt, true),
            json::parse(R"({"id": "cmpl-2", "object": "text_completion", "created": 9,
                            "model": "tiny",
                            "choices": [{"index": 0, "text": "wor", "logprobs": null,
                                         "finish_reason": null}]})"));
  const auto last = stream_chunk(Endpoint::Completions, "cmpl-2", 9, "tiny", "", "length", false);
  EXPECT_EQ(last["choices"][0]["text"], "");
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(last.contains("usage"));
}

json chat_chunk_with(const json& delta, const json& finish) {
  json j = json::parse(R"({"id": "c", "object": "chat.completion.chunk", "created": 3,
                           "model": "tiny",
                           "choices": [{"index": 0, "logprobs": null}]})");
  j["choices"][0]["delta"] = delta;
  j["choices"][0]["finish_reason"] = finish;
  return j;
}

TEST(Responses, ChatStreamChunks) {
  const auto chunk = [](std::string_view text, const FinishReason& f, bool first) {
    return stream_chunk(Endpoint::ChatCompletions, "c", 3, "tiny", text, f, first);
  };
  // The opening chunk: role, and content even when empty.
  EXPECT_EQ(chunk("", std::nullopt, true),
            chat_chunk_with(json::parse(R"({"role": "assistant", "content": ""})"), nullptr));
  EXPECT_EQ(chunk("Hel", std::nullopt, true),
            chat_chunk_with(json::parse(R"({"role": "assistant", "content": "Hel"})"), nullptr));
  EXPECT_EQ(chunk("lo", std::nullopt, false),
            chat_chunk_with(json::parse(R"({"content": "lo"})"), nullptr));
  // A middle chunk with no text still carries content (an empty string).
  EXPECT_EQ(chunk("", std::nullopt, false),
            chat_chunk_with(json::parse(R"({"content": ""})"), nullptr));
  // Closing chunks: an empty delta when there is no text left.
  EXPECT_EQ(chunk("", "stop", false), chat_chunk_with(json::object(), "stop"));
  EXPECT_EQ(chunk("!", "length", false),
            chat_chunk_with(json::parse(R"({"content": "!"})"), "length"));
  EXPECT_EQ(chunk("", "stop", true),
            chat_chunk_with(json::parse(R"({"role": "assistant"})"), "stop"));
}

TEST(Responses, UsageChunk) {
  EXPECT_EQ(usage_chunk(Endpoint::ChatCompletions, "c", 3, "tiny", {7, 2}),
            json::parse(R"({"id": "c", "object": "chat.completion.chunk", "created": 3,
                            "model": "tiny", "choices": [],
                            "usage": {"prompt_tokens": 7, "completion_tokens": 2,
                                      "total_tokens": 9}})"));
  EXPECT_EQ(usage_chunk(Endpoint::Completions, "c", 3, "tiny", {1, 1}),
            json::parse(R"({"id": "c", "object": "text_completion", "created": 3,
                            "model": "tiny", "choices": [],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                      "total_tokens": 2}})"));
}

TEST(Responses, SseEvent) {
  EXPECT_EQ(sse_event(json{{"a", 1}, {"b", "x y"}}), "data: {\"a\":1,\"b\":\"x y\"}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
  // Non-ASCII stays as UTF-8; invalid UTF-8 (a character cut by a token
  // boundary) becomes U+FFFD instead of throwing.
  EXPECT_EQ(sse_event(json{{"t", "\xc3\xa9"}}), "data: {\"t\":\"\xc3\xa9\"}\n\n");
  std::string out;
  EXPECT_NO_THROW(out = sse_event(json{{"t", std::string("a\xc3")}}));
  EXPECT_EQ(out, "data: {\"t\":\"a\xef\xbf\xbd\"}\n\n");
  const auto chunk = stream_chunk(Endpoint::Completions, "i", 1, "m", "\xff", std::nullopt, false);
  EXPECT_NO_THROW(out = sse_event(chunk));
  EXPECT_EQ(out.rfind("data: {", 0), 0u);
  EXPECT_EQ(out.substr(out.size() - 2), "\n\n");
}

TEST(Responses, ModelsResponse) {
  EXPECT_EQ(models_response({"tiny", "tiny-chat"}, 42, 4096),
            json::parse(R"({"object": "list", "data": [
                {"id": "tiny", "object": "model", "created": 42, "owned_by": "qllm",
                 "max_model_len": 4096},
                {"id": "tiny-chat", "object": "model", "created": 42, "owned_by": "qllm",
                 "max_model_len": 4096}]})"));
  EXPECT_EQ(models_response({}, 1, 2), json::parse(R"({"object": "list", "data": []})"));
}

// ---- StopMatcher -------------------------------------------------------

TEST(StopMatcher, NoStopsPassesEverything) {
  StopMatcher m({});
  EXPECT_EQ(m.feed("abc"), "abc");
  EXPECT_EQ(m.feed(""), "");
  EXPECT_EQ(m.flush(), "");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, EmptyStopStringsAreIgnored) {
  StopMatcher m({""});
  EXPECT_EQ(m.feed("abc"), "abc");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, StopInOneFeed) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.feed("Hello STOP world"), "Hello ");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.feed("more"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, StopAtTheStart) {
  StopMatcher m({"\n"});
  EXPECT_EQ(m.feed("\nabc"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, StopSplitAcrossFeeds) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.feed("Hel"), "Hel");
  EXPECT_EQ(m.feed("lo ST"), "lo ");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.feed("O"), "");
  EXPECT_EQ(m.feed("P and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.feed("x"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, StopFedOneByteAtATime) {
  StopMatcher m({"</s>"});
  std::string out;
  for (char c : std::string("ab</s>cd")) out += m.feed(std::string(1, c));
  EXPECT_EQ(out, "ab");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, HeldPrefixIsReleasedWhenItIsNotAStop) {
  StopMatcher m({"</s>"});
  EXPECT_EQ(m.feed("a<"), "a");
  EXPECT_EQ(m.feed("/"), "");
  EXPECT_EQ(m.feed("x"), "</x");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.feed("</"), "");
  EXPECT_EQ(m.flush(), "</");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, OverlappingPrefixHoldsOnlyWhatCouldStillMatch) {
  StopMatcher m({"aab"});
  EXPECT_EQ(m.feed("aa"), "");
  EXPECT_EQ(m.feed("a"), "a");  // "aa" may still start "aab"
  EXPECT_EQ(m.feed("b"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, MultipleStops) {
  StopMatcher m({"\n\n", "END"});
  EXPECT_EQ(m.feed("line\n"), "line");
  EXPECT_EQ(m.feed("next"), "\nnext");
  EXPECT_EQ(m.feed(" E"), " ");
  EXPECT_EQ(m.feed("ND tail"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, LongestHeldPrefixOverAllStops) {
  StopMatcher m({"xyz", "yq"});
  EXPECT_EQ(m.feed("axy"), "a");  // "xy" could start "xyz", "y" could start "yq"
  EXPECT_EQ(m.feed("q"), "x");    // "yq" completes
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, FirstStopToCompleteWinsWhateverTheFeeds) {
  StopMatcher whole({"abcd", "bc"});
  EXPECT_EQ(whole.feed("abcd"), "a");
  EXPECT_TRUE(whole.stopped());
  StopMatcher bytes({"abcd", "bc"});
  std::string out;
  for (char c : std::string("abcd")) out += bytes.feed(std::string(1, c));
  EXPECT_EQ(out, "a");
  // Two stops ending at the same place: the longer one (starting earlier).
  StopMatcher tie({"c", "bc"});
  EXPECT_EQ(tie.feed("abc"), "a");
}

TEST(StopMatcher, FlushReturnsHeldText) {
  StopMatcher m({"###"});
  EXPECT_EQ(m.feed("done#"), "done");
  EXPECT_EQ(m.feed("#"), "");
  EXPECT_EQ(m.flush(), "##");
  EXPECT_EQ(m.flush(), "");
  EXPECT_FALSE(m.stopped());
}

// The text before the first stop to complete, computed on the whole text.
std::string reference_cut(const std::string& text, const std::vector<std::string>& stops,
                          bool& stopped) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t best = std::string::npos;
    for (const auto& s : stops)
      if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0)
        best = std::min(best, end - s.size());
    if (best != std::string::npos) {
      stopped = true;
      return text.substr(0, best);
    }
  }
  stopped = false;
  return text;
}

TEST(StopMatcher, RandomSplitsMatchTheWholeTextReference) {
  std::mt19937 rng(12345);
  const std::string alphabet = "ab\n";
  auto random_string = [&](size_t lo, size_t hi) {
    std::string s(std::uniform_int_distribution<size_t>(lo, hi)(rng), ' ');
    for (auto& c : s) c = alphabet[std::uniform_int_distribution<size_t>(0, 2)(rng)];
    return s;
  };
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<std::string> stops;
    const size_t n_stops = std::uniform_int_distribution<size_t>(1, 4)(rng);
    for (size_t i = 0; i < n_stops; ++i) stops.push_back(random_string(1, 4));
    const std::string text = random_string(0, 24);
    bool want_stopped = false;
    const std::string want = reference_cut(text, stops, want_stopped);

    StopMatcher m(stops);
    std::string got;
    for (size_t pos = 0; pos < text.size();) {
      const size_t len =
          std::min(text.size() - pos, std::uniform_int_distribution<size_t>(0, 5)(rng));
      const std::string piece = m.feed(std::string_view(text).substr(pos, len));
      got += piece;
      // What was sent never holds a stop string.
      for (const auto& s : stops) ASSERT_EQ(got.find(s), std::string::npos);
      pos += len;
    }
    got += m.flush();
    ASSERT_EQ(got, want) << "text '" << text << "' trial " << trial;
    ASSERT_EQ(m.stopped(), want_stopped) << "text '" << text << "' trial " << trial;
  }
}

}  // namespace
}  // namespace qllm::serve
