// The HTTP side of `ckv serve`: routes, authentication, OpenAI wire format, Server-Sent
// Events, and the hand-off to the engine worker and the background store writer.
#include "ckv/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <utility>
#include <variant>

#include "ckv/model.h"
#include "ckv/reprefill.h"
#include "ckv/tokenizer.h"
#include "server/api_error.h"
#include "server/chat_prompt.h"
#include "server/compute_gate.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/scheduler.h"
#include "server/store_writer.h"
#include "server/text_stream.h"

namespace ckv {

using json = nlohmann::ordered_json;
using server::ApiError;
using server::CompletionRequest;
using server::Endpoint;

namespace {

constexpr char kJson[] = "application/json";

enum class LoadState { kLoading, kReady, kFailed };

void Reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
}

void ReplyError(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  res.set_content(e.ToJson(), kJson);
}

std::string RandomId(const char* prefix) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(prefix) + buf;
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The routes metrics are labelled with (anything else is "other": bounded label values).
std::string EndpointLabel(const std::string& path) {
  static const char* kRoutes[] = {
      "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/tokenize",
      "/detokenize",          "/apply-template"};
  for (const char* r : kRoutes) {
    if (path == r) return r;
  }
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models";
  return "other";
}

}  // namespace

struct Server::Impl {
  ServerOptions opt;
  httplib::Server http;
  std::thread listen_thread;
  std::thread load_thread;
  int port = 0;

  std::mutex state_mu;
  std::condition_variable state_cv;
  LoadState state = LoadState::kLoading;
  Status load_status;
  bool stopped = false;    // Stop began: new requests get 503
  bool stop_done = false;  // Stop finished: threads joined, store closed
  std::mutex stop_mu;      // one Stop at a time

  // Set once by the loader thread before state becomes kReady; read-only afterwards.
  std::unique_ptr<Model> model;
  std::unique_ptr<PrefixStore> store;
  std::unique_ptr<ReprefillEngine> engine;
  std::optional<server::ChatPrompt> chat;
  ReprefillOptions base;  // system, scoring, budget
  std::string model_name;
  int64_t max_context = 0;

  server::Metrics metrics;
  std::unique_ptr<server::ComputeGate> gate;
  std::unique_ptr<server::Scheduler> worker;
  std::unique_ptr<server::StoreWriter> writer;

  void Log(const std::string& line) const {
    if (opt.log) opt.log(line);
  }
  bool Ready() {
    std::lock_guard<std::mutex> lock(state_mu);
    return state == LoadState::kReady && !stopped;
  }

  Status Load();
  void Routes();
  bool Authorized(const httplib::Request& req) const;
  void HandleCompletion(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  // The prompt's token ids. `stable` (optional) gets how many of them stay a prefix of the next
  // turn's prompt whatever the answer is: for chat, the conversation rendered without the
  // generation prompt (its last tokens can merge with the answer's first when re-tokenized).
  std::optional<ApiError> PromptIds(const CompletionRequest& r, std::vector<int32_t>* ids,
                                    int64_t* stable = nullptr);
  // The ids of `messages` + {assistant: answer}, rendered without a generation prompt.
  std::optional<std::vector<int32_t>> NextTurnIds(const json& messages, const json& tools,
                                                  const std::string& answer) const;
};

Status Server::Impl::Load() {
  ModelOptions mo;
  mo.require_tokenizer = true;
  mo.resident_weights = !opt.mmap_weights;
  mo.pack_weights = opt.pack_weights;
  CKV_ASSIGN_OR_RETURN(model, Model::Load(opt.model_dir, mo));
  CKV_ASSIGN_OR_RETURN(auto prompt, server::ChatPrompt::Load(opt.model_dir, opt.chat_template_file,
                                                             *model->tokenizer()));
  chat = std::move(prompt);
  StoreOptions so;
  so.max_bytes = opt.store_max_bytes;
  so.fault_injection = opt.store_fault_injection;
  so.sync = opt.store_sync;
  CKV_ASSIGN_OR_RETURN(store, PrefixStore::Open(opt.store_dir, so));
  ReprefillEngine::Config ec;
  ec.layout = DefaultLayoutFor(base.system, opt.layout);
  ec.cache_bytes = opt.cache_bytes;
  ec.cache_policy = DefaultCachePolicyFor(base.system);
  CKV_ASSIGN_OR_RETURN(engine, ReprefillEngine::Create(*model, *store, ec));
  max_context = model->config().max_position_embeddings;
  if (opt.max_context > 0) max_context = std::min<int64_t>(max_context, opt.max_context);
  model_name = opt.served_model_name.empty()
                   ? std::filesystem::path(opt.model_dir).lexically_normal().filename().string()
                   : opt.served_model_name;
  if (model_name.empty()) model_name = "ckv";
  server::Scheduler::Config sc;
  sc.max_queue = static_cast<size_t>(opt.max_queue);
  sc.max_running = opt.max_running;
  sc.max_kv_bytes = opt.max_batch_kv_bytes;
  sc.request_timeout_s = opt.request_timeout_s;
  sc.prefill_layers_per_step = opt.prefill_layers_per_step;
  gate = std::make_unique<server::ComputeGate>(opt.store_compute_share);
  worker = std::make_unique<server::Scheduler>(*engine, model->config(), sc, *gate, metrics);
  server::StoreWriter::Config wc;
  wc.layout = ec.layout;
  wc.min_tokens = opt.store_min_tokens;
  wc.max_queue = static_cast<size_t>(opt.store_queue);
  wc.layers_per_piece = opt.prefill_layers_per_step;  // a store's piece = a request's
  writer = std::make_unique<server::StoreWriter>(*model, *store, wc, *gate, metrics,
                                                 [this](const std::string& l) { Log(l); });
  return Status::OK();
}

bool Server::Impl::Authorized(const httplib::Request& req) const {
  if (opt.api_key.empty()) return true;
  const std::string header = req.get_header_value("Authorization");
  const std::string expected = "Bearer " + opt.api_key;
  // Constant-time compare: the key is a secret.
  if (header.size() != expected.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < header.size(); ++i) diff |= header[i] ^ expected[i];
  return diff == 0;
}

std::optional<ApiError> Server::Impl::PromptIds(const CompletionRequest& r,
                                                std::vector<int32_t>* ids, int64_t* stable) {
  const Tokenizer& tok = *model->tokenizer();
  if (r.endpoint == Endpoint::kChat) {
    if (!chat->has_template()) {
      return ApiError::BadRequest(
          "this model has no chat template: use /v1/completions, or start the server with "
          "--chat-template FILE (a Jinja template as in tokenizer_config.json's chat_template)",
          "messages");
    }
    auto text = chat->Render(r.messages, r.tools, /*add_generation_prompt=*/true);
    if (!text.ok())
      return ApiError::BadRequest("chat template: " + text.status().message(), "messages");
    // The template writes the special tokens itself (as apply_chat_template does).
    auto enc = tok.Encode(*text, /*add_special_tokens=*/false);
    if (!enc.ok()) return ApiError::BadRequest(enc.status().message(), "messages");
    *ids = std::move(enc).value();
    if (stable != nullptr) {
      *stable = static_cast<int64_t>(ids->size());
      auto head = chat->Render(r.messages, r.tools, /*add_generation_prompt=*/false);
      auto head_ids =
          head.ok() ? tok.Encode(*head, false) : Result<std::vector<int32_t>>(head.status());
      if (head_ids.ok() && head_ids->size() < ids->size() &&
          std::equal(head_ids->begin(), head_ids->end(), ids->begin())) {
        *stable = static_cast<int64_t>(head_ids->size());
      }
    }
  } else if (r.prompt_is_ids) {
    for (int32_t id : r.prompt_ids) {
      if (id < 0 || id >= model->config().vocab_size) {
        return ApiError::BadRequest("token id " + std::to_string(id) + " is outside the vocabulary",
                                    "prompt");
      }
    }
    *ids = r.prompt_ids;
  } else {
    auto enc = tok.Encode(r.prompt_text, /*add_special_tokens=*/true);
    if (!enc.ok()) return ApiError::BadRequest(enc.status().message(), "prompt");
    *ids = std::move(enc).value();
  }
  if (ids->empty()) return ApiError::BadRequest("the prompt encodes to no tokens", "prompt");
  return std::nullopt;
}

std::optional<std::vector<int32_t>> Server::Impl::NextTurnIds(const json& messages,
                                                              const json& tools,
                                                              const std::string& answer) const {
  json conversation = messages;
  conversation.push_back({{"role", "assistant"}, {"content", answer}});
  auto text = chat->Render(conversation, tools, /*add_generation_prompt=*/false);
  if (!text.ok()) return std::nullopt;
  auto ids = model->tokenizer()->Encode(*text, /*add_special_tokens=*/false);
  if (!ids.ok()) return std::nullopt;
  return std::move(ids).value();
}

void Server::Impl::HandleCompletion(const httplib::Request& req, httplib::Response& res,
                                    Endpoint endpoint) {
  const auto arrived = std::chrono::steady_clock::now();
  json body;
  if (auto e = server::ParseBody(req.body, &body)) return ReplyError(res, *e);
  CompletionRequest r;
  if (auto e = server::ParseCompletionRequest(body, endpoint, &r)) return ReplyError(res, *e);
  if (!r.model.empty() && r.model != model_name) {
    return ReplyError(
        res, {404, "model '" + r.model + "' is not served here (serving '" + model_name + "')",
              "invalid_request_error", "model", "model_not_found"});
  }
  std::vector<int32_t> prompt;
  int64_t n_stable = 0;
  if (auto e = PromptIds(r, &prompt, &n_stable)) return ReplyError(res, *e);
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  if (n_stable <= 0) n_stable = n_prompt;
  const int64_t room = max_context - n_prompt;
  if (room < 1) {
    return ReplyError(
        res, ApiError::BadRequest("the prompt has " + std::to_string(n_prompt) +
                                      " tokens; the context holds " + std::to_string(max_context),
                                  endpoint == Endpoint::kChat ? "messages" : "prompt"));
  }
  // Chat: up to the context (OpenAI's default); completions: OpenAI's legacy default of 16.
  const int64_t max_tokens =
      r.max_tokens.value_or(endpoint == Endpoint::kChat ? room : std::min<int64_t>(16, room));
  if (max_tokens > room) {  // (not n_prompt + max_tokens: a client's 2^63-1 would overflow)
    return ReplyError(res, ApiError::BadRequest(
                               "prompt (" + std::to_string(n_prompt) + " tokens) + max_tokens (" +
                                   std::to_string(max_tokens) + ") exceeds the context of " +
                                   std::to_string(max_context) + " tokens",
                               "max_tokens"));
  }

  server::GenerationJob job;
  job.prompt = prompt;
  job.options = base;
  job.options.budget = r.budget.value_or(base.budget);
  job.options.max_tokens = static_cast<int>(max_tokens);
  job.options.sampling = r.sampling;
  job.options.keep_exact_kv = r.store.value_or(true);  // the store then computes nothing again
  // Without a seed, sampled answers differ between requests (OpenAI's behaviour).
  if (!r.seed_given) job.options.sampling.seed = std::random_device{}();
  // The tokenizer's end-of-turn token (e.g. <|im_end|>) ends a chat answer even when the
  // model's config.json names another EOS.
  const std::optional<int32_t> eos = model->tokenizer()->eos_id();

  // Tokens flow from the worker thread to this HTTP thread through `channel`.
  struct Channel {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> pending;   // text ready to send, one entry per token
    std::vector<int32_t> pending_ids;  // ids not sent yet (return_token_ids only)
    int64_t first_token_us = -1;
  };
  auto channel = std::make_shared<Channel>();
  auto stream = std::make_shared<server::TextStream>(*model->tokenizer(), prompt, r.stop);
  auto saw_eos = std::make_shared<bool>(false);
  const int delay_ms = opt.debug_token_delay_ms;
  const bool return_ids = r.return_token_ids;
  job.on_token = [channel, stream, eos, saw_eos, arrived, delay_ms, return_ids](int32_t id) {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    std::string piece;
    const bool end_of_turn = eos && id == *eos;
    if (!end_of_turn) piece = stream->Push(id);
    std::lock_guard<std::mutex> lock(channel->mu);
    if (channel->first_token_us < 0) {
      channel->first_token_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                    std::chrono::steady_clock::now() - arrived)
                                    .count();
    }
    if (!piece.empty()) channel->pending.push_back(std::move(piece));
    if (return_ids) channel->pending_ids.push_back(id);
    channel->cv.notify_all();
    if (end_of_turn) *saw_eos = true;
    return !end_of_turn && !stream->stopped();
  };
  auto cancelled = job.cancelled;
  job.on_done = [channel] {
    std::lock_guard<std::mutex> lock(channel->mu);  // (so the waiter cannot miss the wake-up)
    channel->cv.notify_all();
  };
  auto submitted = worker->Submit(std::move(job));
  if (auto* refusal = std::get_if<server::Scheduler::Refusal>(&submitted)) {
    res.set_header("Retry-After", "1");
    if (*refusal == server::Scheduler::Refusal::kStopping) {
      return ReplyError(res, ApiError::Unavailable("the server is stopping"));
    }
    return ReplyError(res, {429,
                            "the server is busy: " + std::to_string(opt.max_queue) +
                                " requests are waiting; retry later",
                            "rate_limit_error", "", "queue_full"});
  }
  auto shared_future = std::make_shared<std::shared_future<server::GenerationOutcome>>(
      std::get<std::future<server::GenerationOutcome>>(submitted).share());
  const std::string id = RandomId(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-");
  const int64_t created = UnixSeconds();
  const bool store_requested = r.store.value_or(true);
  const double budget = r.budget.value_or(base.budget);

  // Everything after generation: usage, metrics, the background store. Runs once per request
  // (a stream aborted mid-way runs it from the provider's releaser).
  auto finished = std::make_shared<std::atomic<bool>>(false);
  auto finish = [this, prompt, n_prompt, n_stable, stream, saw_eos, arrived, store_requested,
                 budget, endpoint, finished, messages = r.messages,
                 tools = r.tools](const server::GenerationOutcome& out, json* usage) {
    if (finished->exchange(true)) return;
    const ReprefillStats& s = out.result.stats;
    // Tokens generated, as the client counts them: the end-of-turn token is not part of it.
    int64_t generated = static_cast<int64_t>(out.result.generated_ids.size());
    if (*saw_eos && generated > 0) --generated;
    const int64_t cached = s.prefix_id.empty() ? 0 : s.prefix_tokens;
    metrics.prompt_tokens += n_prompt;
    metrics.generation_tokens += generated;
    metrics.prefix_cache_queries += n_prompt;
    if (cached > 0) {
      const double mem_share =
          s.attended_bytes > 0 ? std::min(1.0, double(s.cache_bytes_hit) / s.attended_bytes) : 0;
      const int64_t mem = static_cast<int64_t>(cached * mem_share + 0.5);
      metrics.prefix_cache_hits_memory += mem;
      metrics.prefix_cache_hits_ssd += cached - mem;
    }
    metrics.ssd_bytes_read += s.ssd_bytes_read;
    if (s.stored_prefix_failed) {
      metrics.prefix_fallbacks += 1;
      Log("warning: " + s.note);
    }
    const double total_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - arrived).count();
    metrics.request_duration.Observe(total_s);

    // Store the prompt and the whole context for the next turn (background, bounded).
    std::string store_decision = store_requested ? "" : "disabled";
    int64_t store_tokens = 0;
    if (store_requested && !out.server_stopping) {
      std::vector<int32_t> context = prompt;
      if (!out.cancelled && !stream->stopped()) {
        if (endpoint == Endpoint::kChat) {
          // Exactly what the next turn's prompt starts with: the conversation with this answer
          // as the assistant's message, rendered and tokenized as the next request will be
          // (the end-of-turn text included, and no re-tokenization surprise at the seams).
          context = NextTurnIds(messages, tools, stream->text()).value_or(prompt);
        } else {
          context.insert(context.end(), out.result.generated_ids.begin(),
                         out.result.generated_ids.end());
        }
      }
      if (static_cast<int64_t>(context.size()) > max_context) context.resize(max_context);
      store_tokens = static_cast<int64_t>(context.size());
      store_decision = writer->Enqueue(std::move(context), n_stable, out.result.exact_kv);
    }
    json ckv = {{"system", s.system},
                {"budget", budget},
                {"prefix_id", s.prefix_id.empty() ? json(nullptr) : json(s.prefix_id)},
                {"prefix_tokens", cached},
                {"ttft_ms", s.ttft_ms},
                {"queue_ms", out.queue_ms},
                {"io_wait_ms", s.io_wait_ms},
                {"ssd_bytes_read", s.ssd_bytes_read},
                {"cache_bytes_hit", s.cache_bytes_hit},
                {"read_amplification", s.read_amplification},
                {"note", s.note},
                {"store", {{"decision", store_decision}, {"tokens", store_tokens}}}};
    *usage = {{"prompt_tokens", n_prompt},
              {"completion_tokens", generated},
              {"total_tokens", n_prompt + generated},
              {"prompt_tokens_details", {{"cached_tokens", cached}}},
              {"ckv", ckv}};
  };
  auto reason_of = [stream, saw_eos, max_tokens](const server::GenerationOutcome& out) {
    if (stream->stopped() || *saw_eos || out.result.stats.stopped_at_eos) return "stop";
    return static_cast<int64_t>(out.result.generated_ids.size()) >= max_tokens ? "length" : "stop";
  };
  auto timeout_error = [seconds = opt.request_timeout_s] {
    std::ostringstream msg;
    msg << "the request exceeded the server's --request-timeout of " << seconds << " s";
    return server::ApiError{504, msg.str(), "server_error", "", "request_timeout"};
  };
  auto observe_ttft = [this, channel]() {
    std::lock_guard<std::mutex> lock(channel->mu);
    if (channel->first_token_us >= 0) metrics.ttft.Observe(channel->first_token_us / 1e6);
  };

  if (!r.stream) {
    const server::GenerationOutcome& out = shared_future->get();
    if (!out.status.ok()) {
      return ReplyError(
          res, {500, "generation failed: " + out.status.ToString(), "server_error", "", ""});
    }
    if (out.server_stopping) {
      return ReplyError(res,
                        ApiError::Unavailable("the server stopped before the answer was complete"));
    }
    if (out.timed_out) {
      // Counted, and the prompt stored: a retry finds its prefix.
      json usage;
      finish(out, &usage);
      return ReplyError(res, timeout_error());
    }
    stream->Flush();
    observe_ttft();
    json usage;
    const std::string reason = reason_of(out);
    finish(out, &usage);
    json choice;
    if (endpoint == Endpoint::kChat) {
      choice = {{"index", 0},
                {"message", {{"role", "assistant"}, {"content", stream->text()}}},
                {"logprobs", nullptr},
                {"finish_reason", reason}};
    } else {
      choice = {
          {"index", 0}, {"text", stream->text()}, {"logprobs", nullptr}, {"finish_reason", reason}};
    }
    if (return_ids) {
      // Every generated id, an end-of-turn one included: what the server stores as this
      // answer's context, so a client that appends them continues on the stored prefix.
      choice["token_ids"] = out.result.generated_ids;
      choice["prompt_token_ids"] = prompt;
    }
    return Reply(res, 200,
                 {{"id", id},
                  {"object", endpoint == Endpoint::kChat ? "chat.completion" : "text_completion"},
                  {"created", created},
                  {"model", model_name},
                  {"choices", json::array({choice})},
                  {"usage", usage},
                  {"system_fingerprint", nullptr}});
  }

  // Server-Sent Events: one event per token as it is generated.
  const bool include_usage = r.include_usage;
  // With return_token_ids, each chunk carries the ids generated since the previous one (their
  // text may come in a later chunk, when it was held back), and the first the prompt's.
  auto ids_unsent = std::make_shared<std::vector<int32_t>>();
  auto prompt_ids_unsent = std::make_shared<std::optional<std::vector<int32_t>>>(
      return_ids ? std::optional(prompt) : std::nullopt);
  auto chunk = [id, created, endpoint, name = model_name, return_ids, ids_unsent,
                prompt_ids_unsent](const json& delta_or_text, const json& finish_reason) {
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
    if (return_ids) {
      choice["token_ids"] = std::exchange(*ids_unsent, {});
      if (*prompt_ids_unsent) choice["prompt_token_ids"] = *std::exchange(*prompt_ids_unsent, {});
    }
    if (endpoint == Endpoint::kChat) {
      choice["delta"] = delta_or_text;
    } else {
      choice["text"] = delta_or_text;
    }
    json c = {{"id", id},
              {"object", endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", name},
              {"choices", json::array({choice})},
              {"system_fingerprint", nullptr}};
    return c;
  };
  auto event = [](const json& j) {
    return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
  };
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [=](size_t, httplib::DataSink& sink) mutable {
        auto send = [&](const std::string& s) {
          if (!sink.write(s.data(), s.size())) {
            cancelled->store(true);  // the client went away: stop at the next token
            return false;
          }
          return true;
        };
        if (endpoint == Endpoint::kChat &&
            !send(event(chunk({{"role", "assistant"}, {"content", ""}}, nullptr)))) {
          return false;
        }
        auto last_write = std::chrono::steady_clock::now();
        for (;;) {
          // The generation's state first: once it is done, no token can arrive any more.
          const bool done =
              shared_future->wait_for(std::chrono::seconds(0)) == std::future_status::ready;
          std::deque<std::string> pieces;
          {
            std::unique_lock<std::mutex> lock(channel->mu);
            if (!done) {
              channel->cv.wait_for(lock, std::chrono::milliseconds(50),
                                   [&] { return !channel->pending.empty(); });
            }
            pieces.swap(channel->pending);
            ids_unsent->insert(ids_unsent->end(), channel->pending_ids.begin(),
                               channel->pending_ids.end());
            channel->pending_ids.clear();
          }
          for (const std::string& piece : pieces) {  // one event per token
            const json d = endpoint == Endpoint::kChat ? json{{"content", piece}} : json(piece);
            if (!send(event(chunk(d, nullptr)))) return false;
            last_write = std::chrono::steady_clock::now();
          }
          // While queued or in a long prefill nothing else is written: an SSE comment each
          // second (clients ignore it) finds a client that went away.
          if (pieces.empty() &&
              std::chrono::steady_clock::now() - last_write > std::chrono::seconds(1)) {
            if (!send(": keep-alive\n\n")) return false;
            last_write = std::chrono::steady_clock::now();
          }
          if (done) break;
          if (!sink.is_writable()) {
            cancelled->store(true);
            return false;
          }
        }
        const server::GenerationOutcome& out = shared_future->get();
        if (!out.status.ok() || out.server_stopping || out.timed_out) {
          // Not a normal end: an error event, and no [DONE], so no client takes it for one.
          std::string why = out.server_stopping
                                ? "the server stopped before the answer was complete"
                                : "generation failed: " + out.status.ToString();
          if (out.timed_out) {
            json usage;
            finish(out, &usage);
            why = timeout_error().message;
          }
          send(event(json{{"error", {{"message", why}, {"type", "server_error"}}}}));
          sink.done();
          return true;
        }
        const std::string tail = stream->Flush();
        if (!tail.empty()) {
          const json d = endpoint == Endpoint::kChat ? json{{"content", tail}} : json(tail);
          if (!send(event(chunk(d, nullptr)))) return false;
        }
        observe_ttft();
        json usage;
        const std::string reason = reason_of(out);
        finish(out, &usage);
        if (!send(event(chunk(endpoint == Endpoint::kChat ? json::object() : json(""), reason)))) {
          return false;
        }
        if (include_usage) {
          json u = chunk(json::object(), nullptr);
          u["choices"] = json::array();
          u["usage"] = usage;
          if (!send(event(u))) return false;
        }
        send("data: [DONE]\n\n");
        sink.done();
        return true;
      },
      [cancelled, shared_future, finish](bool success) {
        if (success) return;
        // Aborted (client gone, server stopping): the generation ends at the next token; its
        // tokens are still counted and its prompt still stored.
        cancelled->store(true);
        const server::GenerationOutcome& out = shared_future->get();
        if (!out.status.ok()) return;
        json usage;
        finish(out, &usage);
      });
}

void Server::Impl::Routes() {
  // Every queued or running request holds a pool thread, idle keep-alive connections too
  // (for at most the keep-alive timeout): room for the queue and the running requests plus 16
  // others (/health probes, 429 answers, template and tokenize calls).
  const int threads = opt.max_queue + opt.max_running + 16;
  http.set_keep_alive_timeout(2);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(static_cast<size_t>(opt.max_body_bytes));
  // Responses with an error status and no body (404 unknown route, 413 too large, a request
  // httplib could not parse) get an OpenAI error object.
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                     httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e{res.status, "", "invalid_request_error", "", ""};
    if (res.status == 404) {
      e.message = "no route " + req.method + " " + req.path;
      e.code = "not_found";
    } else if (res.status == 413) {
      e.message = "request body over the limit of " + std::to_string(opt.max_body_bytes) + " bytes";
      e.code = "request_too_large";
    } else {
      e.message = "HTTP " + std::to_string(res.status);
    }
    ReplyError(res, e);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        ReplyError(res, {500, "internal error: " + what, "server_error", "", ""});
      });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics.CountRequest(EndpointLabel(req.path), res.status);
  });

  // Authentication and readiness, checked inside each handler: httplib runs a pre-routing
  // handler before it reads the body, and answering then leaves a POST's body on a keep-alive
  // connection, where it would be read as the next request.
  auto guarded = [this](bool needs_model, httplib::Server::Handler h) {
    return [this, needs_model, h](const httplib::Request& req, httplib::Response& res) {
      if (!Authorized(req)) {
        res.set_header("WWW-Authenticate", "Bearer");
        return ReplyError(res, {401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                                "invalid_request_error", "", "invalid_api_key"});
      }
      if (needs_model && !Ready()) {
        std::string why;
        {
          std::lock_guard<std::mutex> lock(state_mu);
          why = stopped ? "the server is stopping"
                : state == LoadState::kFailed
                    ? "the model failed to load: " + load_status.ToString()
                    : "the model is loading; retry shortly";
        }
        res.set_header("Retry-After", "1");
        return ReplyError(res, ApiError::Unavailable(why));
      }
      h(req, res);
    };
  };
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(state_mu);
    if (state == LoadState::kReady && !stopped) return Reply(res, 200, {{"status", "ok"}});
    if (state == LoadState::kFailed) {
      return Reply(res, 503, {{"status", "error"}, {"message", load_status.ToString()}});
    }
    Reply(res, 503, {{"status", stopped ? "stopping" : "loading"}});
  });
  http.Get("/metrics", guarded(false, [this](const httplib::Request&, httplib::Response& res) {
             res.set_content(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8");
           }));
  auto model_json = [this] {
    return json{{"id", model_name},
                {"object", "model"},
                {"created", 0},
                {"owned_by", "ckv"},
                {"max_model_len", max_context}};
  };
  http.Get("/v1/models",
           guarded(true, [model_json](const httplib::Request&, httplib::Response& res) {
             Reply(res, 200, {{"object", "list"}, {"data", json::array({model_json()})}});
           }));
  http.Get(R"(/v1/models/(.+))",
           guarded(true, [this, model_json](const httplib::Request& req, httplib::Response& res) {
             if (req.matches[1] != model_name) {
               return ReplyError(
                   res, {404, "model '" + std::string(req.matches[1]) + "' is not served here",
                         "invalid_request_error", "model", "model_not_found"});
             }
             Reply(res, 200, model_json());
           }));
  http.Post("/v1/chat/completions",
            guarded(true, [this](const httplib::Request& req, httplib::Response& res) {
              HandleCompletion(req, res, Endpoint::kChat);
            }));
  http.Post("/v1/completions",
            guarded(true, [this](const httplib::Request& req, httplib::Response& res) {
              HandleCompletion(req, res, Endpoint::kCompletion);
            }));
  http.Post(
      "/tokenize", guarded(true, [this](const httplib::Request& req, httplib::Response& res) {
        json body;
        if (auto e = server::ParseBody(req.body, &body)) return ReplyError(res, *e);
        std::vector<int32_t> ids;
        CompletionRequest r;
        if (body.contains("messages")) {
          r.endpoint = Endpoint::kChat;
          if (auto e = server::ParseMessages(body, &r.messages, &r.tools))
            return ReplyError(res, *e);
          if (auto e = PromptIds(r, &ids)) return ReplyError(res, *e);
        } else {
          const json& text = body.contains("text") ? body["text"] : body.value("prompt", json());
          if (!text.is_string()) {
            return ReplyError(
                res, ApiError::BadRequest("'text' (or 'prompt') must be a string", "text"));
          }
          const json add = body.value("add_special_tokens", json(true));
          if (!add.is_boolean()) {
            return ReplyError(res, ApiError::BadRequest("'add_special_tokens' must be a boolean",
                                                        "add_special_tokens"));
          }
          auto enc = model->tokenizer()->Encode(text.get<std::string>(), add.get<bool>());
          if (!enc.ok())
            return ReplyError(res, ApiError::BadRequest(enc.status().message(), "text"));
          ids = std::move(enc).value();
        }
        Reply(res, 200, {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", max_context}});
      }));
  http.Post("/detokenize",
            guarded(true, [this](const httplib::Request& req, httplib::Response& res) {
              json body;
              if (auto e = server::ParseBody(req.body, &body)) return ReplyError(res, *e);
              const json& t = body.value("tokens", json());
              if (!t.is_array())
                return ReplyError(
                    res, ApiError::BadRequest("'tokens' must be an array of ids", "tokens"));
              std::vector<int32_t> ids;
              for (const json& x : t) {
                if (!x.is_number_integer()) {
                  return ReplyError(
                      res, ApiError::BadRequest("'tokens' must be an array of ids", "tokens"));
                }
                ids.push_back(static_cast<int32_t>(x.get<int64_t>()));
              }
              const json skip = body.value("skip_special_tokens", json(false));
              auto text = model->tokenizer()->Decode(ids, skip.is_boolean() && skip.get<bool>());
              if (!text.ok())
                return ReplyError(res, ApiError::BadRequest(text.status().message(), "tokens"));
              Reply(res, 200, {{"text", *text}});
            }));
  http.Post(
      "/apply-template", guarded(true, [this](const httplib::Request& req, httplib::Response& res) {
        json body;
        if (auto e = server::ParseBody(req.body, &body)) return ReplyError(res, *e);
        json messages, tools;
        if (auto e = server::ParseMessages(body, &messages, &tools)) return ReplyError(res, *e);
        const json agp = body.value("add_generation_prompt", json(true));
        if (!agp.is_boolean()) {
          return ReplyError(res, ApiError::BadRequest("'add_generation_prompt' must be a boolean",
                                                      "add_generation_prompt"));
        }
        if (!chat->has_template()) {
          return ReplyError(
              res, ApiError::BadRequest("this model has no chat template (start the server with "
                                        "--chat-template FILE)",
                                        "messages"));
        }
        auto text = chat->Render(messages, tools, agp.get<bool>());
        if (!text.ok()) {
          return ReplyError(
              res, ApiError::BadRequest("chat template: " + text.status().message(), "messages"));
        }
        Reply(res, 200, {{"prompt", *text}});
      }));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Stop();
  if (impl_->load_thread.joinable()) impl_->load_thread.join();
  if (impl_->listen_thread.joinable()) impl_->listen_thread.join();
}

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  if (options.model_dir.empty()) return Status::InvalidArgument("--model is required");
  if (options.store_dir.empty()) return Status::InvalidArgument("--store is required");
  if (!(options.budget > 0 && options.budget <= 1)) {
    return Status::InvalidArgument("--budget must be in (0, 1]");
  }
  if (options.max_queue < 1) return Status::InvalidArgument("--max-queue must be >= 1");
  if (options.max_running < 1) return Status::InvalidArgument("--max-running must be >= 1");
  if (options.max_batch_kv_bytes < 1) {
    return Status::InvalidArgument("--max-batch-kv-mib must be > 0");
  }
  if (options.prefill_layers_per_step < 1) {
    return Status::InvalidArgument("--prefill-layers-per-step must be >= 1");
  }
  if (!(options.store_compute_share >= 0 && options.store_compute_share < 1)) {
    return Status::InvalidArgument("--store-share must be in [0, 1)");
  }
  if (!(options.request_timeout_s >= 0)) {
    return Status::InvalidArgument("--request-timeout must be >= 0 seconds (0 = none)");
  }
  if (options.store_queue < 1) return Status::InvalidArgument("store queue must be >= 1");
  if (options.port < 0 || options.port > 65535)
    return Status::InvalidArgument("--port must be in 0..65535");
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  CKV_RETURN_IF_ERROR(ApplySystemName(options.system, impl->base));
  impl->base.budget = options.budget;
  impl->Routes();
  if (options.port == 0) {
    impl->port = impl->http.bind_to_any_port(options.host);
  } else {
    impl->port = impl->http.bind_to_port(options.host, options.port) ? options.port : -1;
  }
  if (impl->port <= 0) {
    return Status::IOError("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                           " (address in use, or not an address of this machine)");
  }
  Impl* p = impl.get();
  p->listen_thread = std::thread([p] { p->http.listen_after_bind(); });
  // httplib's stop() does nothing until the listen loop runs: wait for it, so that a Stop
  // right after Start (a model that fails to load at once) cannot be lost.
  while (!p->http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  p->load_thread = std::thread([p] {
    Status st = p->Load();
    {
      std::lock_guard<std::mutex> lock(p->state_mu);
      p->load_status = st;
      p->state = st.ok() ? LoadState::kReady : LoadState::kFailed;
    }
    p->state_cv.notify_all();
    if (st.ok()) {
      p->Log("ckv serve: listening on http://" + p->opt.host + ":" + std::to_string(p->port) +
             ", model " + p->opt.model_dir + " (served as '" + p->model_name + "'), store " +
             p->opt.store_dir + " (" + std::to_string(p->store->size()) + " prefixes), system " +
             p->opt.system + ", budget " + json(p->opt.budget).dump() +
             (p->model->packed_weights() ? ", weights also packed for GEMM" : ""));
    } else {
      p->Log("error: " + st.ToString());
    }
  });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::port() const {
  return impl_->port;
}

Status Server::WaitReady() {
  std::unique_lock<std::mutex> lock(impl_->state_mu);
  impl_->state_cv.wait(lock, [&] { return impl_->state != LoadState::kLoading; });
  return impl_->load_status;
}

void Server::Wait() {
  std::unique_lock<std::mutex> lock(impl_->state_mu);
  impl_->state_cv.wait(lock, [&] { return impl_->stop_done; });
}

void Server::Stop() {
  // A second Stop (another thread, the destructor) waits here until the first is done.
  std::lock_guard<std::mutex> one_at_a_time(impl_->stop_mu);
  {
    std::lock_guard<std::mutex> lock(impl_->state_mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl_->state_cv.notify_all();
  if (impl_->load_thread.joinable()) impl_->load_thread.join();
  // Running and queued generations end at their next token; their handlers then finish.
  if (impl_->worker) impl_->worker->Shutdown();
  impl_->http.stop();
  if (impl_->listen_thread.joinable()) impl_->listen_thread.join();
  if (impl_->writer) {
    impl_->writer->Shutdown(
        std::chrono::milliseconds(static_cast<int64_t>(impl_->opt.shutdown_store_wait_s * 1000)));
  }
  impl_->engine.reset();
  if (impl_->store) (void)impl_->store->Flush();
  {
    std::lock_guard<std::mutex> lock(impl_->state_mu);
    impl_->stop_done = true;
  }
  impl_->state_cv.notify_all();
}

}  // namespace ckv
