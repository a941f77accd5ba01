// `ckv serve` under load and under SIGKILL, with the bundled model on loopback. Small sizes in
// `make test`; scripts/load-test.sh runs the full sizes (64 clients, 1,000 requests; 20
// kills) through the same tests: CKV_LOAD_CLIENTS, CKV_LOAD_REQUESTS, CKV_KILL_ITERATIONS.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "ckv/prefix_store.h"
#include "ckv/server.h"
#include "test_util.h"

extern char** environ;

namespace ckv {
namespace {

using nlohmann::json;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

// Shared texts (many-shot / RAG style) and a conversation's turns, cut from the story; sized
// for the bundled model's 512-token context (about 2 characters per token).
struct Texts {
  std::vector<std::string> shared;
  std::vector<std::string> questions;
};

Texts MakeTexts() {
  const std::string story = test::ReadFileOrDie(test::TextDataDir() + "/tinystories.txt");
  Texts t;
  for (int i = 0; i < 3; ++i) t.shared.push_back(story.substr(5000 * i, 400));
  for (int i = 0; i < 40; ++i) t.questions.push_back(story.substr(20000 + 300 * i, 60));
  return t;
}

TEST(ServerLoad, ManyClientsMixedWorkloadsNoErrorsNoLeaks) {
  const int clients = EnvInt("CKV_LOAD_CLIENTS", 12);
  const int requests = EnvInt("CKV_LOAD_REQUESTS", 60);
  const Texts texts = MakeTexts();
  const size_t fds_before = CountEntries("/proc/self/fd");
  const size_t threads_before = CountEntries("/proc/self/task");
  {
    ServerOptions o;
    o.model_dir = test::BundledModelDir();
    o.store_dir = test::MakeTempDir("serve-load");
    o.port = 0;
    o.store_min_tokens = 16;
    o.store_sync = false;
    o.max_running = 8;
    o.max_queue = std::max(2, clients / 4);  // fewer than the clients: some get 429 and retry
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    std::unique_ptr<Server> server = std::move(s).value();
    ASSERT_TRUE(server->WaitReady().ok());
    const int port = server->port();

    std::atomic<int> next{0}, answered{0}, refused{0};
    std::mutex mu;
    std::vector<std::string> failures;
    auto fail = [&](const std::string& why) {
      std::lock_guard<std::mutex> lock(mu);
      failures.push_back(why);
    };
    // Each client: conversations (each turn's prompt = the previous prompt + answer + a
    // question) and shared-prefix requests, streamed and not, until the requests run out.
    auto client = [&](int id) {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(300, 0);
      std::mt19937 rng(id);
      std::string conversation;
      for (int i; (i = next++) < requests;) {
        std::string prompt;
        if (rng() % 2 == 0) {
          if (conversation.empty() || conversation.size() > 700) {
            conversation = texts.shared[rng() % texts.shared.size()];
          }
          conversation += texts.questions[rng() % texts.questions.size()];
          prompt = conversation;
        } else {
          prompt = texts.shared[i % texts.shared.size()] + texts.questions[i % 40];
        }
        const bool stream = rng() % 2 == 0;
        const int max_tokens = 4 + static_cast<int>(rng() % 12);
        json body = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
        if (stream) body["stream"] = true;
        for (int attempt = 0;; ++attempt) {
          auto res = c.Post("/v1/completions", body.dump(), "application/json");
          if (!res) {
            fail("request " + std::to_string(i) + ": " + httplib::to_string(res.error()));
            break;
          }
          if (res->status == 429 && attempt < 1000) {
            ++refused;
            EXPECT_EQ(res->get_header_value("Retry-After"), "1");
            std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 80));
            continue;
          }
          if (res->status != 200) {
            fail("request " + std::to_string(i) + ": HTTP " + std::to_string(res->status) + " " +
                 res->body.substr(0, 200));
            break;
          }
          // Complete: a finish reason and usage (streams: the last event before [DONE]).
          std::string text;
          if (stream) {
            if (res->body.find("data: [DONE]") == std::string::npos ||
                res->body.find("\"finish_reason\":\"") == std::string::npos) {
              fail("stream " + std::to_string(i) + " incomplete: " + res->body.substr(0, 200));
            }
          } else {
            const json j = json::parse(res->body, nullptr, false);
            if (j.is_discarded() || j["choices"][0]["finish_reason"].is_null() ||
                !j.contains("usage")) {
              fail("answer " + std::to_string(i) + " incomplete: " + res->body.substr(0, 200));
            } else {
              text = j["choices"][0]["text"].get<std::string>();
            }
          }
          if (!conversation.empty() && prompt == conversation) conversation += text;
          ++answered;
          break;
        }
      }
    };
    std::vector<std::thread> pool;
    for (int i = 0; i < clients; ++i) pool.emplace_back(client, i);
    for (auto& t : pool) t.join();
    for (const auto& f : failures) ADD_FAILURE() << f;
    EXPECT_EQ(answered.load(), requests);
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf("load: %d clients, %d requests, %d refused (429, retried), peak RSS %.0f MiB\n",
                clients, requests, refused.load(), ru.ru_maxrss / 1024.0);
    // Bounded: the bundled model is 1 MB; the sequences' KV and buffers stay far below this.
    EXPECT_LT(ru.ru_maxrss / 1024.0, 2048.0);
    server->Stop();
  }
  // Everything the server opened and started is gone with it (libgomp's pool may remain:
  // compare against the count before, with the OpenMP threads it already had).
  EXPECT_EQ(CountEntries("/proc/self/fd"), fds_before);
  EXPECT_LE(CountEntries("/proc/self/task"), std::max<size_t>(threads_before, 2));
}

// A free loopback port (bound and released: a race with other processes is possible but
// harmless here, the server then fails to start and the test says so).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST(ServerKill, SigkillDuringBackgroundStoresLeavesAConsistentStore) {
  const int iterations = EnvInt("CKV_KILL_ITERATIONS", 4);
  const std::string store = test::MakeTempDir("serve-kill");
  const Texts texts = MakeTexts();
  std::mt19937 rng(11);
  int killed_with_pending_stores = 0;
  for (int iter = 0; iter < iterations; ++iter) {
    const int port = FreePort();
    const std::string model = test::BundledModelDir();
    const std::string port_s = std::to_string(port);
    std::vector<std::string> args = {
        CKV_CLI_PATH,         "serve", "--model", model, "--store", store, "--port", port_s,
        "--store-min-tokens", "16"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, CKV_CLI_PATH, &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    // Killed and reaped on every path out of this iteration (a failed assertion included).
    struct Reaper {
      pid_t pid;
      bool reaped = false;
      ~Reaper() {
        if (reaped) return;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    } reaper{pid};
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    bool ready = false;
    for (int i = 0; i < 400 && !ready; ++i) {
      auto h = c.Get("/health");
      ready = h && h->status == 200;
      if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_TRUE(ready) << "ckv serve did not come up on port " << port;
    // Requests whose contexts are stored in the background; killed at a random moment after.
    const int n = 2 + static_cast<int>(rng() % 3);
    for (int r = 0; r < n; ++r) {
      const std::string prompt =
          texts.shared[rng() % 3] + texts.questions[rng() % 40] + texts.questions[rng() % 40];
      auto res = c.Post("/v1/completions",
                        json{{"prompt", prompt}, {"max_tokens", 6}, {"temperature", 0}}.dump(),
                        "application/json");
      ASSERT_TRUE(res && res->status == 200) << (res ? res->body : httplib::to_string(res.error()));
    }
    auto m = c.Get("/metrics");
    if (m && m->body.find("ckv_store_pending 0\n") == std::string::npos) {
      ++killed_with_pending_stores;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 60));
    ::kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    reaper.reaped = true;
    ASSERT_TRUE(WIFSIGNALED(wstatus));

    // The store opens; every listed prefix verifies and opens whole (none half-visible).
    const auto verify = test::RunCli("cache verify --store " + store);
    EXPECT_EQ(verify.exit_code, 0) << verify.output;
    StoreOptions so;
    so.sync = false;
    auto s = PrefixStore::Open(store, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    for (const auto& p : (*s)->List()) {
      EXPECT_TRUE((*s)->Verify(p.id).ok()) << p.id;
      EXPECT_TRUE((*s)->OpenPrefix(p.id).ok()) << p.id;
    }
  }
  std::printf("kills: %d, %d with background stores pending\n", iterations,
              killed_with_pending_stores);
}

}  // namespace
}  // namespace ckv
