// The server's protocol pieces without HTTP: request validation (ApiError names the field) and
// TextStream (what a streaming client sees, token by token).
#include <gtest/gtest.h>

#include "ckv/generate.h"
#include "ckv/model.h"
#include "server/openai_request.h"
#include "server/text_stream.h"
#include "test_util.h"

namespace ckv::server {
namespace {

using json = nlohmann::ordered_json;

TEST(OpenAIRequest, NormalizesMessagesForTemplates) {
  const json body = json::parse(R"({
    "messages": [
      {"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
      {"role": "assistant", "content": null,
       "tool_calls": [{"id": "c1", "type": "function",
                       "function": {"name": "f", "arguments": "{\"b\": 1, \"a\": 2}"}}]},
      {"role": "tool", "content": "42"}],
    "max_completion_tokens": 5, "stop": ["x", "y"], "seed": 7,
    "stream": true, "stream_options": {"include_usage": true}, "ckv_budget": 0.25, "ckv_store": false})");
  CompletionRequest r;
  ASSERT_FALSE(ParseCompletionRequest(body, Endpoint::kChat, &r));
  EXPECT_EQ(r.messages[0]["content"], "Be brief.");
  // Arguments become an object, keys in the client's order (they reach the prompt via tojson).
  EXPECT_EQ(r.messages[1]["tool_calls"][0]["function"]["arguments"].dump(), R"({"b":1,"a":2})");
  EXPECT_EQ(r.max_tokens, 5);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(r.seed_given);
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_EQ(r.budget, 0.25);
  EXPECT_EQ(r.store, false);
}

TEST(OpenAIRequest, ErrorsNameTheField) {
  struct Case {
    const char* body;
    const char* param;
  } cases[] = {
      {R"({"messages": [{"role": "user"}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": "a"}], "stop": ["1","2","3","4","5"]})",
       "stop"},
      {R"({"messages": [{"role": "user", "content": "a"}], "top_p": 0})", "top_p"},
      {R"({"messages": [{"role": "user", "content": "a"}], "seed": 1.5})", "seed"},
      {R"({"messages": [{"role": "user", "content": "a"}], "tools": {}})", "tools"},
      {R"({"messages": [{"role": "assistant", "content": null, "tool_calls": [{}]}]})",
       "messages[0].tool_calls[0]"},
  };
  for (const auto& c : cases) {
    CompletionRequest r;
    auto e = ParseCompletionRequest(json::parse(c.body), Endpoint::kChat, &r);
    ASSERT_TRUE(e.has_value()) << c.body;
    EXPECT_EQ(e->http_status, 400);
    EXPECT_EQ(e->param, c.param) << c.body;
    const json j = json::parse(e->ToJson());
    EXPECT_EQ(j["error"]["param"], c.param);
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  }
}

class TextStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Model::Load(test::BundledModelDir());
    ASSERT_TRUE(m.ok());
    model_ = std::move(m).value();
  }
  std::vector<int32_t> Encode(const std::string& s) {
    return *model_->tokenizer()->Encode(s, false);
  }
  std::unique_ptr<Model> model_;
};

TEST_F(TextStreamTest, EmitsEachTokensTextAndHoldsBackPartialCharacters) {
  const auto prompt = *model_->tokenizer()->Encode("Hi", true);
  const auto ids = Encode(" the cat 日本 sat");  // 日本: byte-fallback tokens, 3 per character
  TextStream ts(*model_->tokenizer(), prompt, {});
  std::string all;
  for (int32_t id : ids) {
    const std::string piece = ts.Push(id);
    // Never half a character.
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << piece;
    all += piece;
  }
  all += ts.Flush();
  EXPECT_EQ(all, *DecodeContinuation(*model_->tokenizer(), prompt, ids));
  EXPECT_NE(all.find("日本 sat"), std::string::npos) << all;
  EXPECT_EQ(ts.text(), all);
}

TEST_F(TextStreamTest, StopStringsSpanningTokensCutAndAreNeverEmitted) {
  const auto prompt = *model_->tokenizer()->Encode("Hi", true);
  const auto ids = Encode(" Once upon a time there was a dog");
  TextStream ts(*model_->tokenizer(), prompt, {"e there w"});
  std::string all;
  for (int32_t id : ids) {
    all += ts.Push(id);
    if (ts.stopped()) break;
  }
  all += ts.Flush();
  EXPECT_TRUE(ts.stopped());
  const std::string full = *DecodeContinuation(*model_->tokenizer(), prompt, ids);
  EXPECT_EQ(all, full.substr(0, full.find("e there w")));
  EXPECT_NE(all.find("Once upon a tim"), std::string::npos) << all;
  EXPECT_EQ(ts.text(), all);
}

}  // namespace
}  // namespace ckv::server
