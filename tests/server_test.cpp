// `ckv serve` over HTTP on 127.0.0.1 (an ephemeral port), with the bundled model: the OpenAI
// wire format, SSE framing, every error status, the API key, automatic prefix caching across
// the turns of a conversation and across a restart, budget 1.0 against plain generation,
// store failures, and client disconnects.
#include "ckv/server.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "ckv/generate.h"
#include "ckv/model.h"
#include "test_util.h"

namespace ckv {
namespace {

using nlohmann::json;

// Qwen2.5-Instruct's template, applied to the bundled model's plain-text tokenizer: the
// rendered prompt is ordinary text to it, which is all these protocol tests need.
std::string QwenTemplateFile() {
  static const std::string path = [] {
    const json cfg = json::parse(
        test::ReadFileOrDie(test::SourceDir() + "/models/qwen2-tokenizer/tokenizer_config.json"));
    const std::string p = test::MakeTempDir("tmpl") + "/qwen.jinja";
    std::ofstream(p) << cfg["chat_template"].get<std::string>();
    return p;
  }();
  return path;
}

struct Running {
  std::unique_ptr<Server> server;
  std::unique_ptr<httplib::Client> client;
};

ServerOptions BaseOptions(const std::string& store) {
  ServerOptions o;
  o.model_dir = test::BundledModelDir();
  o.store_dir = store;
  o.port = 0;
  o.store_min_tokens = 16;
  o.chat_template_file = QwenTemplateFile();
  o.served_model_name = "stories";
  o.store_sync = false;  // no fsync: these tests run under sanitizers on a loaded machine
  return o;
}

Running StartServer(const ServerOptions& o) {
  Running r;
  auto s = Server::Start(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return r;
  r.server = std::move(s).value();
  const Status ready = r.server->WaitReady();
  EXPECT_TRUE(ready.ok()) << ready.ToString();
  r.client = std::make_unique<httplib::Client>("127.0.0.1", r.server->port());
  r.client->set_read_timeout(60, 0);
  if (!o.api_key.empty()) r.client->set_bearer_token_auth(o.api_key);
  return r;
}

json Post(httplib::Client& c, const std::string& path, const json& body, int* status = nullptr) {
  auto res = c.Post(path, body.dump(), "application/json");
  EXPECT_TRUE(res) << path << ": " << httplib::to_string(res.error());
  if (!res) return json();
  if (status) *status = res->status;
  return json::parse(res->body, nullptr, false);
}

// Expects an OpenAI error object with `status`; returns its message.
std::string ExpectError(httplib::Client& c, const std::string& path, const std::string& body,
                        int status, const std::string& param = "") {
  auto res = c.Post(path, body, "application/json");
  EXPECT_TRUE(res);
  if (!res) return "";
  EXPECT_EQ(res->status, status) << body << " -> " << res->body;
  const json j = json::parse(res->body, nullptr, false);
  EXPECT_TRUE(j.contains("error") && j["error"].contains("message") &&
              j["error"].contains("type") && j["error"].contains("param") &&
              j["error"].contains("code"))
      << res->body;
  if (!param.empty()) {
    EXPECT_EQ(j["error"]["param"], param) << res->body;
  }
  return j.value("/error/message"_json_pointer, "");
}

double MetricValue(httplib::Client& c, const std::string& series) {
  auto res = c.Get("/metrics");
  if (!res) return -1;
  std::istringstream in(res->body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nan("");  // not exported: no comparison passes by accident
}

// Waits until the background store writer has nothing queued or in progress.
void WaitForStoreWriter(httplib::Client& c) {
  for (int i = 0; i < 2400 && MetricValue(c, "ckv_store_pending") != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(MetricValue(c, "ckv_store_pending"), 0);
}

// What `ckv generate --kv bf16` answers: plain greedy generation with bf16 KV, as stored.
std::string PlainGreedyText(const std::string& prompt, int max_tokens) {
  auto model = Model::Load(test::BundledModelDir());
  EXPECT_TRUE(model.ok());
  if (!model.ok()) return "";
  auto ids = (*model)->tokenizer()->Encode(prompt, true);
  EXPECT_TRUE(ids.ok());
  GenerateOptions go;
  go.max_tokens = max_tokens;
  go.kv_precision = KVPrecision::kBF16;
  auto g = Generate(**model, *ids, go);
  EXPECT_TRUE(g.ok());
  return g.ok() ? g->text : "";
}

// Flips one bit at byte 64 of every stored data segment (.kv) under `store`.
void FlipAByteInEverySegment(const std::string& store) {
  for (const auto& f : std::filesystem::directory_iterator(store + "/segments")) {
    if (f.path().extension() != ".kv") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(64);
    char b = 0;
    io.read(&b, 1);
    b = static_cast<char>(b ^ 0x10);
    io.seekp(64);
    io.write(&b, 1);
  }
}

json ChatBody(const json& messages, int max_tokens) {
  return {
      {"model", "stories"}, {"messages", messages}, {"max_tokens", max_tokens}, {"temperature", 0}};
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = test::MakeTempDir("serve-store");
    run_ = StartServer(BaseOptions(store_));
    ASSERT_TRUE(run_.client);
  }
  httplib::Client& client() { return *run_.client; }
  std::string store_;
  Running run_;
};

TEST_F(ServerTest, HealthModelsAndMetrics) {
  auto h = client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = client().Get("/v1/models");
  ASSERT_TRUE(m);
  const json models = json::parse(m->body);
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "stories");
  auto one = client().Get("/v1/models/stories");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200);
  auto missing = client().Get("/v1/models/gpt-4");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  auto metrics = client().Get("/metrics");
  ASSERT_TRUE(metrics);
  for (const char* name :
       {"ckv_requests_total", "ckv_prompt_tokens_total", "ckv_generation_tokens_total",
        "ckv_prefix_cache_queries_total", "ckv_prefix_cache_hits_total", "ckv_ssd_bytes_read_total",
        "ckv_store_writes_total", "ckv_store_bytes", "ckv_store_prefixes", "ckv_requests_running",
        "ckv_requests_waiting", "ckv_time_to_first_token_seconds", "ckv_request_duration_seconds",
        "ckv_compute_seconds_total"}) {
    EXPECT_NE(metrics->body.find(std::string("# HELP ") + name + " "), std::string::npos) << name;
    EXPECT_NE(metrics->body.find(std::string("# TYPE ") + name + " "), std::string::npos) << name;
  }
}

TEST_F(ServerTest, ChatCompletionHasTheOpenAIShapeAndUsage) {
  int status = 0;
  const json r = Post(
      client(), "/v1/chat/completions",
      ChatBody({{{"role", "user"}, {"content", "Tell me a story about a cat."}}}, 12), &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["model"], "stories");
  EXPECT_TRUE(r["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(r["choices"][0]["message"]["content"].is_string());
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  const json& u = r["usage"];
  EXPECT_GT(u["prompt_tokens"].get<int>(), 20);
  EXPECT_EQ(u["completion_tokens"], 12);
  EXPECT_EQ(u["total_tokens"], u["prompt_tokens"].get<int>() + 12);
  EXPECT_EQ(u["prompt_tokens_details"]["cached_tokens"], 0);  // an empty store
  for (const char* f : {"system", "budget", "prefix_id", "prefix_tokens", "ttft_ms", "io_wait_ms",
                        "ssd_bytes_read", "cache_bytes_hit", "read_amplification", "store"}) {
    EXPECT_TRUE(u["ckv"].contains(f)) << f;
  }
  EXPECT_EQ(u["ckv"]["store"]["decision"], "queued");
}

TEST_F(ServerTest, ApplyTemplateTokenizeDetokenize) {
  int status = 0;
  const json msgs = {{{"role", "user"}, {"content", "Hi"}}};
  const json t = Post(client(), "/apply-template", {{"messages", msgs}}, &status);
  ASSERT_EQ(status, 200) << t.dump();
  EXPECT_EQ(t["prompt"],
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  const json no_gen =
      Post(client(), "/apply-template", {{"messages", msgs}, {"add_generation_prompt", false}});
  EXPECT_EQ(no_gen["prompt"].get<std::string>().find("<|im_start|>assistant"), std::string::npos);
  const json tok = Post(client(), "/tokenize", {{"text", "Once upon a time"}});
  ASSERT_TRUE(tok["tokens"].is_array());
  EXPECT_EQ(tok["tokens"][0], 1);  // BOS
  const json det =
      Post(client(), "/detokenize", {{"tokens", tok["tokens"]}, {"skip_special_tokens", true}});
  EXPECT_EQ(det["text"], "Once upon a time");
}

TEST_F(ServerTest, EveryErrorIsAnOpenAIErrorObject) {
  const std::string chat = "/v1/chat/completions";
  ExpectError(client(), chat, "{not json", 400);
  ExpectError(client(), chat, R"({"messages": []})", 400, "messages");
  ExpectError(client(), chat, R"({"messages": "hi"})", 400, "messages");
  ExpectError(client(), chat, R"({"messages": [{"role": "wizard", "content": "x"}]})", 400,
              "messages[0].role");
  ExpectError(client(), chat, R"({"messages": [{"role": "user", "content": 5}]})", 400,
              "messages[0].content");
  const std::string user = R"("messages": [{"role": "user", "content": "hi"}])";
  ExpectError(client(), chat, "{" + user + R"(, "n": 2})", 400, "n");
  ExpectError(client(), chat, "{" + user + R"(, "ckv_budget": 0})", 400, "ckv_budget");
  ExpectError(client(), chat, "{" + user + R"(, "ckv_budget": 1.5})", 400, "ckv_budget");
  ExpectError(client(), chat, "{" + user + R"(, "temperature": "hot"})", 400, "temperature");
  ExpectError(client(), chat, "{" + user + R"(, "max_tokens": 0})", 400, "max_tokens");
  ExpectError(client(), chat, "{" + user + R"(, "stream": "yes"})", 400, "stream");
  ExpectError(client(), chat, "{" + user + R"(, "ckv_store": 1})", 400, "ckv_store");
  const std::string over =
      ExpectError(client(), chat, "{" + user + R"(, "max_tokens": 100000})", 400, "max_tokens");
  EXPECT_NE(over.find("exceeds the context of 512"), std::string::npos) << over;
  ExpectError(client(), chat, "{" + user + R"(, "model": "gpt-4"})", 404, "model");
  ExpectError(client(), "/v1/completions", R"({"prompt": 7})", 400, "prompt");
  ExpectError(client(), "/v1/completions", R"({"prompt": [1, 999999]})", 400, "prompt");
  ExpectError(client(), "/v1/nothing", "{}", 404);
  ExpectError(client(), "/tokenize", "[1]", 400);
  ExpectError(client(), chat, "\"hi\"", 400);
  // Inputs that once crashed or overflowed: a wrong-typed content part, a huge max_tokens, an
  // id past 2^32, nesting deep enough to overflow a recursive copy.
  ExpectError(client(), chat,
              R"({"messages": [{"role": "user", "content": [{"type": 1, "text": "x"}]}]})", 400,
              "messages[0].content");
  ExpectError(client(), chat, "{" + user + R"(, "max_tokens": 9223372036854775807})", 400,
              "max_tokens");
  ExpectError(client(), "/v1/completions", R"({"prompt": [1, 4294967297]})", 400, "prompt");
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  ExpectError(client(), chat, "{" + user + R"(, "x": )" + deep + "}", 400);
  ExpectError(client(), "/v1/completions", R"({"prompt": )" + deep + "}", 400);
  ExpectError(client(), "/v1/chat/completions", std::string(17 << 20, ' '), 413);
  // Still serving after all of that.
  auto h = client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST_F(ServerTest, CompletionsTakeTextOrTokenIds) {
  int status = 0;
  const json text =
      Post(client(), "/v1/completions",
           {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}}, &status);
  ASSERT_EQ(status, 200) << text.dump();
  EXPECT_EQ(text["object"], "text_completion");
  const json tok = Post(client(), "/tokenize", {{"text", "Once upon a time"}});
  const json ids = Post(client(), "/v1/completions",
                        {{"prompt", tok["tokens"]}, {"max_tokens", 8}, {"temperature", 0}});
  EXPECT_EQ(ids["choices"][0]["text"], text["choices"][0]["text"]);
  EXPECT_EQ(text["usage"]["completion_tokens"], 8);
}

// Parses an SSE body into its JSON events ([DONE] left out), expecting nothing but
// "data: ...\n\n" events.
std::vector<json> SseEvents(const std::string& sse) {
  std::vector<json> events;
  size_t pos = 0;
  for (size_t end; (end = sse.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
    const std::string ev = sse.substr(pos, end - pos);
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    if (ev.rfind("data: ", 0) == 0 && ev != "data: [DONE]") {
      events.push_back(json::parse(ev.substr(6)));
    }
  }
  EXPECT_EQ(pos, sse.size()) << "an unterminated event: " << sse.substr(pos);
  return events;
}

// SSE: "data: {json}\n\n" events, one per token, then "data: [DONE]"; the streamed text equals
// the non-streamed answer; usage in a last chunk with empty choices when asked for.
TEST_F(ServerTest, StreamingIsServerSentEventsOnePerToken) {
  const json msgs = {{{"role", "user"}, {"content", "Tell me about a dog."}}};
  json body = ChatBody(msgs, 10);
  body["ckv_store"] = false;  // so that the streamed request is a plain prefill too
  const json plain = Post(client(), "/v1/chat/completions", body);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto res = client().Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  const std::string& sse = res->body;
  ASSERT_GE(sse.size(), 14u);
  EXPECT_EQ(sse.substr(sse.size() - 14), "data: [DONE]\n\n");
  const std::vector<json> events = SseEvents(sse);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front()["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  int content_events = 0;
  std::string finish;
  for (const json& e : events) {
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    if (e["choices"].empty()) continue;
    const json& d = e["choices"][0]["delta"];
    if (d.contains("content") && !d["content"].get<std::string>().empty()) {
      text += d["content"].get<std::string>();
      ++content_events;
    }
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, plain["choices"][0]["message"]["content"].get<std::string>());
  EXPECT_GE(content_events, 5);  // token by token, not one blob
  EXPECT_EQ(finish, "length");
  const json& last = events.back();
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(last["usage"]["completion_tokens"], 10);
}

TEST_F(ServerTest, StopStringsCutTheAnswer) {
  const json base = Post(client(), "/v1/completions",
                         {{"prompt", "Once upon a time"}, {"max_tokens", 24}, {"temperature", 0}});
  const std::string full = base["choices"][0]["text"];
  ASSERT_GT(full.size(), 12u);
  const std::string stop = full.substr(6, 4);
  const json cut = Post(
      client(), "/v1/completions",
      {{"prompt", "Once upon a time"}, {"max_tokens", 24}, {"temperature", 0}, {"stop", stop}});
  EXPECT_EQ(cut["choices"][0]["text"], full.substr(0, full.find(stop)));
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
}

// return_token_ids (vLLM's extension): the answer's ids beside its text, streamed or not, and
// a client that appends them to its prompt finds the whole stored context.
TEST_F(ServerTest, ReturnTokenIdsGivesTheIdsTheStoreKeeps) {
  const json tok = Post(client(), "/tokenize", {{"text", "Once upon a time"}});
  json body = {{"prompt", "Once upon a time"},
               {"max_tokens", 12},
               {"temperature", 0},
               {"return_token_ids", true},
               {"ckv_store", false}};
  const json plain = Post(client(), "/v1/completions", body);
  const json& choice = plain["choices"][0];
  ASSERT_TRUE(choice["token_ids"].is_array()) << plain.dump();
  const std::vector<int32_t> ids = choice["token_ids"];
  EXPECT_EQ(choice["prompt_token_ids"], tok["tokens"]);
  ASSERT_EQ(static_cast<int64_t>(ids.size()), plain["usage"]["completion_tokens"].get<int64_t>());
  const json text = Post(client(), "/detokenize", {{"tokens", ids}});
  EXPECT_EQ(text["text"], choice["text"]);

  // Streamed: the chunks' ids, concatenated, are the same ids; the first chunk has the prompt's.
  body["stream"] = true;
  auto res = client().Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res && res->status == 200);
  const std::vector<json> events = SseEvents(res->body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front()["choices"][0]["prompt_token_ids"], tok["tokens"]);
  std::vector<int32_t> streamed;
  for (const json& e : events) {
    if (e["choices"].empty()) continue;
    for (const auto& t : e["choices"][0]["token_ids"]) streamed.push_back(t.get<int32_t>());
  }
  EXPECT_EQ(streamed, ids);

  // Stored, then continued with exactly those ids: the whole context hits but its last token,
  // which was sampled and never run through the model (this request was a plain prefill, so
  // its exact KV was stored as it was computed; ExactContextKV).
  body.erase("stream");
  body["ckv_store"] = true;
  const json stored = Post(client(), "/v1/completions", body);
  WaitForStoreWriter(client());
  std::vector<int32_t> next = tok["tokens"];
  next.insert(next.end(), ids.begin(), ids.end());
  const size_t context = next.size();
  next.insert(next.end(), ids.begin(), ids.begin() + 4);  // the next turn's own tokens
  const json t2 =
      Post(client(), "/v1/completions", {{"prompt", next}, {"max_tokens", 2}, {"temperature", 0}});
  EXPECT_EQ(t2["usage"]["prompt_tokens_details"]["cached_tokens"].get<size_t>(), context - 1)
      << stored.dump() << t2.dump();

  ExpectError(client(), "/v1/completions",
              R"({"prompt": "Once", "max_tokens": 2, "return_token_ids": "yes"})", 400,
              "return_token_ids");
}

// The next turn of a conversation starts with this turn's context: it must hit the store.
TEST_F(ServerTest, SecondTurnHitsTheStoreAndRestartKeepsIt) {
  json msgs = {{{"role", "user"}, {"content", "Once upon a time there was a girl named Lily."}}};
  const json t1 = Post(client(), "/v1/chat/completions", ChatBody(msgs, 16));
  EXPECT_EQ(t1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  WaitForStoreWriter(client());
  // The conversation before the generation prompt, and the next turn's start.
  EXPECT_EQ(MetricValue(client(), "ckv_store_writes_total{result=\"stored\"}"), 2);
  // Every kind of compute this turn ran is counted: its prefill, its 15 decode steps. Nothing
  // was stored before, so its prefill attended everything: the two stores took its KV as it
  // was computed and computed nothing again.
  auto compute_s = [&](const std::string& kind) {
    return MetricValue(client(), "ckv_compute_seconds_total{kind=\"" + kind + "\"}");
  };
  auto store_tokens = [&](const std::string& source) {
    return MetricValue(client(), "ckv_store_tokens_total{source=\"" + source + "\"}");
  };
  EXPECT_GT(compute_s("decode"), 0);
  EXPECT_GT(compute_s("prefill"), 0);
  EXPECT_EQ(compute_s("store"), 0);
  EXPECT_GT(store_tokens("given"), t1["usage"]["prompt_tokens"].get<int>());
  EXPECT_EQ(store_tokens("computed"), 0);
  msgs.push_back({{"role", "assistant"}, {"content", t1["choices"][0]["message"]["content"]}});
  msgs.push_back({{"role", "user"}, {"content", "What did she do next?"}});
  const json t2 = Post(client(), "/v1/chat/completions", ChatBody(msgs, 8));
  const int prompt2 = t2["usage"]["prompt_tokens"];
  const int cached2 = t2["usage"]["prompt_tokens_details"]["cached_tokens"];
  // Turn 1's context was stored as turn 2 renders it: all of it hits.
  EXPECT_GT(cached2, t1["usage"]["prompt_tokens"].get<int>()) << t2["usage"].dump();
  EXPECT_LT(cached2, prompt2);
  EXPECT_FALSE(t2["usage"]["ckv"]["prefix_id"].is_null());
  EXPECT_GT(MetricValue(client(), "ckv_prefix_cache_queries_total"), 0);
  // Turn 2 attended a selection (budget 0.5): its KV is not exact, so its stores read the
  // parent back and compute the new tokens with full attention.
  WaitForStoreWriter(client());
  EXPECT_GT(compute_s("store"), 0);
  EXPECT_GT(store_tokens("computed"), 0);
  EXPECT_GT(store_tokens("read"), 0);

  // A restarted server hits what the first one stored.
  run_.client.reset();
  run_.server->Stop();
  run_.server.reset();
  run_ = StartServer(BaseOptions(store_));
  ASSERT_TRUE(run_.client);
  // (Turn 2's own prompt was stored too, so now nearly all of it hits.)
  const json again = Post(client(), "/v1/chat/completions", ChatBody(msgs, 8));
  EXPECT_GE(again["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), cached2)
      << again["usage"].dump();
}

// Exact attention is one flag away: at budget 1.0 a request served from a stored prefix
// generates what plain generation does on the same prompt (bf16 KV, as the store keeps it).
TEST_F(ServerTest, BudgetOneEqualsPlainGeneration) {
  const std::string story =
      test::ReadFileOrDie(test::SourceDir() + "/data/demo_story.txt").substr(0, 900);
  Post(client(), "/v1/completions", {{"prompt", story}, {"max_tokens", 1}, {"temperature", 0}});
  WaitForStoreWriter(client());
  const std::string prompt = story + " The next day,";
  const json r =
      Post(client(), "/v1/completions",
           {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}, {"ckv_budget", 1.0}});
  ASSERT_GT(r["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0) << r.dump();
  EXPECT_EQ(r["choices"][0]["text"].get<std::string>(), PlainGreedyText(prompt, 24));
}

// A byte flipped in a stored unit: the request that reads it recomputes (a warning, a metric),
// its answer is plain generation's, and the damaged prefix is never used again.
TEST_F(ServerTest, ACorruptStoredUnitCostsARecomputeNotAWrongAnswer) {
  const std::string story =
      test::ReadFileOrDie(test::SourceDir() + "/data/demo_story.txt").substr(0, 900);
  Post(client(), "/v1/completions", {{"prompt", story}, {"max_tokens", 1}, {"temperature", 0}});
  WaitForStoreWriter(client());
  FlipAByteInEverySegment(store_);
  const std::string prompt = story + " The next day,";
  const json body = {
      {"prompt", prompt}, {"max_tokens", 16}, {"temperature", 0}, {"ckv_budget", 1.0}};
  int status = 0;
  const json r = Post(client(), "/v1/completions", body, &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << r["usage"].dump();
  EXPECT_NE(r["usage"]["ckv"]["note"].get<std::string>().find("recomputed"), std::string::npos)
      << r["usage"].dump();
  EXPECT_EQ(MetricValue(client(), "ckv_prefix_fallbacks_total"), 1);
  EXPECT_EQ(r["choices"][0]["text"].get<std::string>(), PlainGreedyText(prompt, 16));
}

// The text a server started with `o` answers `prompt` with: greedy, 16 tokens.
std::string ServedGreedyText(const ServerOptions& o, const std::string& prompt) {
  Running run = StartServer(o);
  if (!run.client) return "(the server did not start)";
  int status = 0;
  const json r = Post(*run.client, "/v1/completions",
                      {{"prompt", prompt}, {"max_tokens", 16}, {"temperature", 0}}, &status);
  if (status != 200) return "(status " + std::to_string(status) + ") " + r.dump();
  return r["choices"][0]["text"].get<std::string>();
}

// --mmap-weights: the model mapped instead of read resident serves the same answers.
TEST(ServerModel, MappedWeightsServeTheSameAnswers) {
  const std::string prompt = "Once upon a time, a little dog";
  const std::string expected = PlainGreedyText(prompt, 16);  // before the server's threads
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-mmap"));
  o.mmap_weights = true;
  EXPECT_EQ(ServedGreedyText(o, prompt), expected);
}

// --pack-weights: the model is loaded with the GEMM copy (the startup line says so) and the
// answers are those of plain greedy generation.
TEST(ServerModel, PackedWeightsServeTheSameAnswers) {
  const std::string prompt = "Once upon a time, a little dog";
  const std::string expected = PlainGreedyText(prompt, 16);
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-pack"));
  o.pack_weights = true;
  auto lines = std::make_shared<std::vector<std::string>>();
  auto mu = std::make_shared<std::mutex>();
  o.log = [lines, mu](const std::string& line) {
    std::lock_guard<std::mutex> lock(*mu);
    lines->push_back(line);
  };
  EXPECT_EQ(ServedGreedyText(o, prompt), expected);
  std::lock_guard<std::mutex> lock(*mu);
  bool packed = false;
  for (const std::string& line : *lines) {
    if (line.find("listening on") != std::string::npos &&
        line.find("weights also packed for GEMM") != std::string::npos) {
      packed = true;
    }
  }
  EXPECT_TRUE(packed) << "startup lines: " << lines->size();
}

TEST(ServerAuth, KeyRequiredExceptForHealth) {
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-auth"));
  o.api_key = "sk-test";
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  httplib::Client anon("127.0.0.1", run.server->port());
  auto h = anon.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = anon.Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 401);
  EXPECT_NE(m->body.find("invalid_api_key"), std::string::npos);
  anon.set_bearer_token_auth("sk-wrong");
  auto w = anon.Get("/v1/models");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->status, 401);
  auto ok = run.client->Get("/v1/models");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  // A POST refused for its key leaves the keep-alive connection usable (its body was read).
  httplib::Client same("127.0.0.1", run.server->port());
  same.set_keep_alive(true);
  same.set_bearer_token_auth("sk-wrong");
  const std::string body = R"({"prompt": "Once", "max_tokens": 2})";
  auto first = same.Post("/v1/completions", body, "application/json");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 401);
  same.set_bearer_token_auth("sk-test");
  auto second = same.Post("/v1/completions", body, "application/json");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 200) << second->body;
}

TEST(ServerStore, AFullDiskCostsTheStoreNotTheAnswer) {
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-enospc"));
  o.store_fault_injection = [](const std::string& path) {
    return path.find("segments") != std::string::npos ? ENOSPC : 0;
  };
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  for (int i = 0; i < 2; ++i) {
    int status = 0;
    const json r = Post(*run.client, "/v1/completions",
                        {{"prompt", "Once upon a time there was a big red ball"},
                         {"max_tokens", 20},
                         {"temperature", 0}},
                        &status);
    EXPECT_EQ(status, 200) << r.dump();
    EXPECT_EQ(r["usage"]["completion_tokens"], 20);
  }
  for (int i = 0;
       i < 400 && !(MetricValue(*run.client, "ckv_store_writes_total{result=\"failed\"}") >= 1);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_GE(MetricValue(*run.client, "ckv_store_writes_total{result=\"failed\"}"), 1);
  EXPECT_EQ(MetricValue(*run.client, "ckv_store_prefixes"), 0);
}

TEST(ServerCancel, AClientThatDisconnectsStopsItsGeneration) {
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-cancel"));
  o.debug_token_delay_ms = 20;  // ~50 tokens/s: slow enough to disconnect mid-answer
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  {
    httplib::Client c("127.0.0.1", run.server->port());
    int events = 0;
    const json body = {
        {"prompt", "Once upon a time"}, {"max_tokens", 400}, {"stream", true}, {"temperature", 0}};
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++events < 5; };
    auto res = c.send(req);  // the receiver returning false closes the connection
    EXPECT_GE(events, 5);
  }
  const auto t0 = std::chrono::steady_clock::now();
  while (!(MetricValue(*run.client, "ckv_requests_cancelled_total") >= 1) &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(MetricValue(*run.client, "ckv_requests_cancelled_total"), 1);
  // It stopped long before its 400 tokens (8 s at this pace) and the server serves again.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(MetricValue(*run.client, "ckv_requests_running"), 0);
}

TEST(ServerQueue, AFullQueueAnswers429WithRetryAfter) {
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-queue"));
  o.max_queue = 1;
  o.max_running = 1;  // the second request waits in the queue, the third finds it full
  o.debug_token_delay_ms = 20;
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  // 400 tokens at 20 ms each: the first request runs for 8 s, long past the checks below.
  const std::string body =
      json{{"prompt", "Once upon a time"}, {"max_tokens", 400}, {"temperature", 0}}.dump();
  auto post = [&](int* code) {
    httplib::Client c("127.0.0.1", run.server->port());
    c.set_read_timeout(120, 0);
    auto res = c.Post("/v1/completions", body, "application/json");
    *code = res ? res->status : -1;
  };
  auto wait_for = [&](const char* gauge, double value) {
    for (int i = 0; i < 2000 && MetricValue(*run.client, gauge) != value; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return MetricValue(*run.client, gauge) == value;
  };
  int first = 0, second = 0;
  std::thread running([&] { post(&first); });
  ASSERT_TRUE(wait_for("ckv_requests_running", 1));
  std::thread waiting([&] { post(&second); });
  ASSERT_TRUE(wait_for("ckv_requests_waiting", 1));
  // The queue (1) is full: refused at once.
  auto refused = run.client->Post("/v1/completions", body, "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429);
  EXPECT_EQ(refused->get_header_value("Retry-After"), "1");
  EXPECT_NE(refused->body.find("queue_full"), std::string::npos);
  // Stopping ends both at their next token: not a normal answer (503), and no hang.
  run.server->Stop();
  running.join();
  waiting.join();
  EXPECT_EQ(first, 503);
  EXPECT_EQ(second, 503);
}

// Posts each body from its own client thread at once; returns the answers' texts (or
// "HTTP <status>").
std::vector<std::string> PostConcurrently(int port, const std::vector<json>& bodies) {
  std::vector<std::string> texts(bodies.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < bodies.size(); ++i) {
    threads.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(120, 0);
      auto res = c.Post("/v1/completions", bodies[i].dump(), "application/json");
      if (!res || res->status != 200) {
        texts[i] = "HTTP " + std::to_string(res ? res->status : -1);
        return;
      }
      texts[i] = json::parse(res->body)["choices"][0]["text"].get<std::string>();
    });
  }
  for (auto& t : threads) t.join();
  return texts;
}

// Posts every prompt at once (greedy, `max_tokens`, plus the fields of `extra`) and expects
// each answer to be exactly plain generation of that prompt alone.
void ExpectConcurrentAnswersArePlainGeneration(int port, const std::vector<std::string>& prompts,
                                               int max_tokens, const json& extra,
                                               const std::string& what) {
  std::vector<json> bodies;
  for (const auto& p : prompts) {
    json body = {{"prompt", p}, {"max_tokens", max_tokens}, {"temperature", 0}};
    body.update(extra);
    bodies.push_back(std::move(body));
  }
  const auto texts = PostConcurrently(port, bodies);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(texts[i], PlainGreedyText(prompts[i], max_tokens)) << what << " request " << i;
  }
}

std::vector<json> FourPrompts(int max_tokens) {
  std::vector<json> bodies;
  for (const char* p : {"Once upon a time", "The little dog", "Lily and Ben went to the park",
                        "One day, a big red ball"}) {
    bodies.push_back({{"prompt", p}, {"max_tokens", max_tokens}, {"temperature", 0}});
  }
  return bodies;
}

TEST(ServerBatch, ConcurrentRequestsDecodeTogetherAndAnswerAsAlone) {
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-batch"));
  o.max_running = 4;
  o.budget = 1.0;  // exact attention: stored prefixes from earlier answers change nothing
  o.debug_token_delay_ms = 2;
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  const auto bodies = FourPrompts(24);
  std::vector<std::string> alone;
  for (const auto& b : bodies) alone.push_back(PostConcurrently(run.server->port(), {b})[0]);
  const double steps0 = MetricValue(*run.client, "ckv_decode_steps_total");
  const double rows0 = MetricValue(*run.client, "ckv_decode_rows_total");
  EXPECT_EQ(steps0, rows0);  // one at a time: batches of one
  const auto together = PostConcurrently(run.server->port(), bodies);
  // Up to 8 rows, the batched projections compute each row as alone (the GEMV path).
  EXPECT_EQ(together, alone);
  const double steps = MetricValue(*run.client, "ckv_decode_steps_total") - steps0;
  const double rows = MetricValue(*run.client, "ckv_decode_rows_total") - rows0;
  EXPECT_GT(rows / steps, 1.5) << rows << " rows in " << steps << " steps";
  EXPECT_LE(rows / steps, 4.0);
}

TEST(ServerBatch, TheKVBoundAdmitsOneSequenceAtATime) {
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-kvbound"));
  o.max_running = 4;
  o.max_batch_kv_bytes = 1;  // below any request's bound: one at a time, none refused
  o.debug_token_delay_ms = 2;
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  const auto texts = PostConcurrently(run.server->port(), FourPrompts(12));
  for (const auto& t : texts) EXPECT_EQ(t.rfind("HTTP", 0), std::string::npos) << t;
  EXPECT_EQ(MetricValue(*run.client, "ckv_decode_steps_total"),
            MetricValue(*run.client, "ckv_decode_rows_total"));
  EXPECT_EQ(MetricValue(*run.client, "ckv_sequence_kv_reserved_bytes"), 0);
}

TEST(ServerBatch, ARequestPastItsTimeoutIsAnswered504AndTheServerGoesOn) {
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-timeout"));
  o.request_timeout_s = 0.3;
  o.debug_token_delay_ms = 20;  // 400 tokens would take 8 s
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  const json slow = {{"prompt", "Once upon a time"}, {"max_tokens", 400}, {"temperature", 0}};
  const auto t0 = std::chrono::steady_clock::now();
  auto res = run.client->Post("/v1/completions", slow.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
  EXPECT_EQ(res->status, 504) << res->body;
  EXPECT_NE(res->body.find("request_timeout"), std::string::npos) << res->body;
  EXPECT_EQ(MetricValue(*run.client, "ckv_requests_timed_out_total"), 1);
  // Streaming: an error event and no [DONE].
  json stream = slow;
  stream["stream"] = true;
  auto sres = run.client->Post("/v1/completions", stream.dump(), "application/json");
  ASSERT_TRUE(sres);
  EXPECT_NE(sres->body.find("--request-timeout"), std::string::npos) << sres->body;
  EXPECT_EQ(sres->body.find("[DONE]"), std::string::npos);
  EXPECT_EQ(MetricValue(*run.client, "ckv_requests_timed_out_total"), 2);
  // A short request within the limit is answered.
  int status = 0;
  Post(*run.client, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}}, &status);
  EXPECT_EQ(status, 200);
}

TEST(ServerBatch, StoresKeepUpUnderALoadThatNeverPauses) {
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-storeshare"));
  o.debug_token_delay_ms = 20;
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  // A long stream keeps a request pending for 8 s...
  std::thread busy([&] {
    httplib::Client c("127.0.0.1", run.server->port());
    c.set_read_timeout(120, 0);
    c.Post("/v1/completions",
           json{{"prompt", "Once"}, {"max_tokens", 400}, {"temperature", 0}}.dump(),
           "application/json");
  });
  for (int i = 0; i < 400 && MetricValue(*run.client, "ckv_requests_running") != 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // ...while a short one, batched beside it, is answered and its context queued for storing.
  int status = 0;
  const json j = Post(*run.client, "/v1/completions",
                      {{"prompt", "Once upon a time there was a little girl named Lily"},
                       {"max_tokens", 8},
                       {"temperature", 0}},
                      &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(j["usage"]["ckv"]["store"]["decision"], "queued") << j.dump();
  // The store gets its share of the compute and finishes while the stream still runs.
  bool stored = false;
  for (int i = 0; i < 300 && !stored; ++i) {
    stored = MetricValue(*run.client, "ckv_store_pending") == 0;
    if (!stored) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(stored);
  EXPECT_EQ(MetricValue(*run.client, "ckv_requests_running"), 1);
  EXPECT_GT(MetricValue(*run.client, "ckv_store_prefixes"), 0);
  run.server->Stop();
  busy.join();
}

TEST(ServerBatch, ACorruptUnitUnderLoadCostsOneRecomputeNotAWrongAnswer) {
  const std::string store = test::MakeTempDir("serve-corrupt-load");
  ServerOptions o = BaseOptions(store);
  o.max_running = 4;
  o.budget = 1.0;  // exact attention: every answer must equal plain generation
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  const std::string story = test::ReadFileOrDie(test::SourceDir() + "/data/demo_story.txt");
  Post(*run.client, "/v1/completions", {{"prompt", story}, {"max_tokens", 1}, {"temperature", 0}});
  WaitForStoreWriter(*run.client);
  // A byte flipped in every stored data segment, then four requests at once: three over the
  // damaged prefix, one unrelated.
  FlipAByteInEverySegment(store);
  const std::vector<std::string> prompts = {story + " The next day,", story + " Then",
                                            story + " Later that night,",
                                            "One day, a little fox found a red ball"};
  ExpectConcurrentAnswersArePlainGeneration(run.server->port(), prompts, 12, {{"ckv_store", false}},
                                            "corrupt store:");
  // The first request over the prefix found the damage and quarantined it; the others did
  // not read it again (one prefill at a time: the quarantine precedes the next lookup).
  EXPECT_EQ(MetricValue(*run.client, "ckv_prefix_fallbacks_total"), 1);
}

// A real full filesystem, not an injected error: the store on a small tmpfs (root only; skipped
// where mounting is not allowed) while concurrent requests each leave a new prefix to store.
// Stores that do not fit fail and are counted; every answer is still exactly plain
// generation; what was stored verifies and opens after the server stops.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(const std::string& size) : dir_(test::MakeTempDir("tmpfs")) {
    const std::string cmd = "mount -t tmpfs -o size=" + size + " ckv-test-tmpfs " + dir_ + " 2>&1";
    mounted_ = ::geteuid() == 0 && test::RunCommand(cmd).exit_code == 0;
  }
  ~SmallTmpfs() {
    if (mounted_) test::RunCommand("umount -l " + dir_);
  }
  bool mounted() const { return mounted_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST(ServerStore, ARealFullTmpfsUnderLoadCostsStoresNotAnswers) {
  SmallTmpfs fs("640k");
  if (!fs.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)";
  const std::string store = fs.dir() + "/store";
  {
    ServerOptions o = BaseOptions(store);
    o.max_running = 4;
    o.budget = 1.0;  // exact attention: every answer must equal plain generation
    Running run = StartServer(o);
    ASSERT_TRUE(run.client);
    const std::string story = test::ReadFileOrDie(test::TextDataDir() + "/tinystories.txt");
    std::vector<std::string> prompts;
    for (int i = 0; i < 12; ++i) prompts.push_back(story.substr(3000 * i, 700));
    for (int wave = 0; wave < 2; ++wave) {  // the second wave finds some prefixes stored
      ExpectConcurrentAnswersArePlainGeneration(run.server->port(), prompts, 8, json::object(),
                                                "wave " + std::to_string(wave) + ":");
      WaitForStoreWriter(*run.client);
    }
    const double failed = MetricValue(*run.client, "ckv_store_writes_total{result=\"failed\"}");
    const double stored = MetricValue(*run.client, "ckv_store_writes_total{result=\"stored\"}");
    std::printf("tmpfs store: %.0f stored, %.0f failed (disk full), %.0f prefixes\n", stored,
                failed, MetricValue(*run.client, "ckv_store_prefixes"));
    EXPECT_GE(failed, 1);
    EXPECT_GE(stored, 1);
    EXPECT_GE(MetricValue(*run.client, "ckv_store_prefixes"), 1);
  }
  const auto verify = test::RunCli("cache verify --store " + store);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
}

TEST(ServerBatch, BatchingOptionsAreChecked) {
  for (auto set : std::vector<std::function<void(ServerOptions&)>>{
           [](ServerOptions& o) { o.max_running = 0; },
           [](ServerOptions& o) { o.max_batch_kv_bytes = 0; },
           [](ServerOptions& o) { o.prefill_layers_per_step = 0; },
           [](ServerOptions& o) { o.request_timeout_s = -1; },
           [](ServerOptions& o) { o.store_compute_share = 1; }}) {
    ServerOptions o = BaseOptions(test::MakeTempDir("serve-opts"));
    set(o);
    auto s = Server::Start(o);
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(ServerTemplate, AModelWithoutTemplateServesCompletionsOnly) {
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-notmpl"));
  o.chat_template_file.clear();  // stories260k's tokenizer_config.json has none
  Running run = StartServer(o);
  ASSERT_TRUE(run.client);
  const std::string msg = ExpectError(*run.client, "/v1/chat/completions",
                                      R"({"messages": [{"role": "user", "content": "hi"}]})", 400);
  EXPECT_NE(msg.find("--chat-template"), std::string::npos) << msg;
  int status = 0;
  Post(*run.client, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}, &status);
  EXPECT_EQ(status, 200);
}

TEST(ServerTemplate, AnUnsupportedTemplateFailsAtStartupNamingTheLine) {
  const std::string path = test::MakeTempDir("bad-tmpl") + "/t.jinja";
  std::ofstream(path) << "{% for m in messages %}\n{{ m.content | frobnicate }}\n{% endfor %}";
  ServerOptions o = BaseOptions(test::MakeTempDir("serve-badtmpl"));
  o.chat_template_file = path;
  auto s = Server::Start(o);
  ASSERT_TRUE(s.ok());
  const Status st = (*s)->WaitReady();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("frobnicate"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("line 2"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace ckv
