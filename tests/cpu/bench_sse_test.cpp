// The incremental Server-Sent Events parser: the event-stream rules, and the
// same payloads however the bytes are split.
#include "engine/bench/sse.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace qllm::bench {
namespace {

using Payloads = std::vector<std::string>;

Payloads parse_whole(std::string_view s) {
  SseParser p;
  return p.feed(s);
}

// Feeds `s` in pieces cut at the given positions (sorted).
Payloads parse_split(std::string_view s, const std::vector<size_t>& cuts) {
  SseParser p;
  Payloads out;
  size_t at = 0;
  for (size_t c : cuts) {
    p.feed(s.substr(at, c - at), out);
    at = c;
  }
  p.feed(s.substr(at), out);
  return out;
}

TEST(SseParser, OneEvent) {
  EXPECT_EQ(parse_whole("data: {\"a\":1}\n\n"), Payloads{"{\"a\":1}"});
}

TEST(SseParser, SeveralEventsInOnePiece) {
  EXPECT_EQ(parse_whole("data: one\n\ndata: two\n\ndata: [DONE]\n\n"),
            (Payloads{"one", "two", "[DONE]"}));
}

TEST(SseParser, LineEndings) {
  EXPECT_EQ(parse_whole("data: a\r\n\r\ndata: b\r\rdata: c\n\r\n"), (Payloads{"a", "b", "c"}));
}

TEST(SseParser, MultiLineData) {
  EXPECT_EQ(parse_whole("data: first\ndata: second\r\ndata:third\n\n"),
            Payloads{"first\nsecond\nthird"});
}

TEST(SseParser, OnlyOneLeadingSpaceIsDropped) {
  EXPECT_EQ(parse_whole("data:x\n\ndata:  y\n\ndata: \n\n"), (Payloads{"x", " y", ""}));
}

TEST(SseParser, DataWithoutColonIsEmpty) {
  EXPECT_EQ(parse_whole("data\n\ndata\ndata\n\n"), (Payloads{"", "\n"}));
}

TEST(SseParser, CommentsAndOtherFieldsAreIgnored) {
  EXPECT_EQ(parse_whole(": keep-alive\n\n:\n\nevent: message\nid: 7\nretry: 100\ndata: x\n"
                        ": a comment inside an event\nfoo: bar\n\n"),
            Payloads{"x"});
}

TEST(SseParser, EventWithoutDataYieldsNothing) {
  EXPECT_TRUE(parse_whole("event: ping\n\nid: 3\n\n\n\n\n").empty());
}

TEST(SseParser, ColonsInsideTheValueStay) {
  EXPECT_EQ(parse_whole("data: {\"text\": \"a: b\"}\n\n"), Payloads{"{\"text\": \"a: b\"}"});
}

TEST(SseParser, DoneIsAnOrdinaryPayload) {
  const auto p = parse_whole("data: [DONE]\n\n");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_TRUE(SseParser::is_done(p[0]));
  EXPECT_FALSE(SseParser::is_done("[DONE] "));
  EXPECT_FALSE(SseParser::is_done("{}"));
}

TEST(SseParser, IncompleteEventIsHeldAndReportedPending) {
  SseParser p;
  EXPECT_FALSE(p.pending());
  EXPECT_TRUE(p.feed("data: a\n").empty());
  EXPECT_TRUE(p.pending());
  EXPECT_EQ(p.feed("\n"), Payloads{"a"});
  EXPECT_FALSE(p.pending());
  EXPECT_TRUE(p.feed("data: b").empty());
  EXPECT_TRUE(p.pending());
}

TEST(SseParser, LeadingBomIsSkippedOnlyAtTheStart) {
  EXPECT_EQ(parse_whole("\xEF\xBB\xBF" "data: a\n\n"), Payloads{"a"});
  EXPECT_EQ(parse_split("\xEF\xBB\xBF" "data: a\n\n", {1, 2}), Payloads{"a"});
  // Not a whole BOM: the bytes are content (here of an unknown field).
  EXPECT_EQ(parse_whole("\xEF\xBB" "data: a\n\ndata: b\n\n"), Payloads{"b"});
  EXPECT_EQ(parse_split("\xEF\xBB" "data: a\n\ndata: b\n\n", {1}), Payloads{"b"});
  // A BOM later on is part of the value.
  EXPECT_EQ(parse_whole("data: a\n\ndata: \xEF\xBB\xBF" "b\n\n"),
            (Payloads{"a", "\xEF\xBB\xBF" "b"}));
}

TEST(SseParser, EmptyPiecesChangeNothing) {
  SseParser p;
  Payloads out;
  p.feed("", out);
  p.feed("data: x", out);
  p.feed("", out);
  p.feed("\r", out);
  p.feed("", out);
  p.feed("\n", out);
  p.feed("", out);
  p.feed("\r\n", out);
  EXPECT_EQ(out, Payloads{"x"});
}

// A stream with every feature, as OpenAI-compatible servers send it.
const std::string kStream =
    "\xEF\xBB\xBF"
    ": ping\r\n\r\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"He\"}]}\r\n\r\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"llo\"}]}\n\n"
    "event: message\nid: 2\ndata: line one\ndata:line two\n\n"
    "data: cr only\r\r"
    "data: {\"choices\":[],\"usage\":{\"completion_tokens\":2}}\n\n"
    ":\n"
    "data: [DONE]\n\n";

const Payloads kExpected = {
    "{\"choices\":[{\"index\":0,\"text\":\"He\"}]}",
    "{\"choices\":[{\"index\":0,\"text\":\"llo\"}]}",
    "line one\nline two",
    "cr only",
    "{\"choices\":[],\"usage\":{\"completion_tokens\":2}}",
    "[DONE]",
};

TEST(SseParser, WholeStream) { EXPECT_EQ(parse_whole(kStream), kExpected); }

TEST(SseParser, SplitAtEveryBytePosition) {
  for (size_t i = 0; i <= kStream.size(); ++i)
    EXPECT_EQ(parse_split(kStream, {i}), kExpected) << "cut at " << i;
}

TEST(SseParser, SplitAtEveryPairOfPositions) {
  for (size_t i = 0; i <= kStream.size(); ++i)
    for (size_t j = i; j <= kStream.size(); ++j)
      ASSERT_EQ(parse_split(kStream, {i, j}), kExpected) << "cuts at " << i << ", " << j;
}

TEST(SseParser, OneByteAtATime) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < kStream.size(); ++i) cuts.push_back(i);
  EXPECT_EQ(parse_split(kStream, cuts), kExpected);
}

TEST(SseParser, PayloadsComeOutAsSoonAsTheirEventEnds) {
  SseParser p;
  EXPECT_TRUE(p.feed("data: a\n").empty());
  EXPECT_EQ(p.feed("\ndata: b\n"), Payloads{"a"});
  EXPECT_EQ(p.feed("\r\n"), Payloads{"b"});
  // The "\n" of a "\r\n" split across pieces is not a second blank line.
  EXPECT_TRUE(p.feed("data: c\r").empty());
  EXPECT_TRUE(p.feed("\n").empty());
  EXPECT_EQ(p.feed("\r"), Payloads{"c"});
  EXPECT_TRUE(p.feed("\n").empty());
  EXPECT_FALSE(p.pending());
}

}  // namespace
}  // namespace qllm::bench
