// ckv serve: flags only; the server lives in src/server (include/ckv/server.h).
#include <pthread.h>
#include <signal.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "ckv/server.h"
#include "cli_common.h"

namespace ckv::cli {

void RegisterServe(CLI::App& root, std::vector<Command>& out) {
  struct Args {
    ServerOptions opt;
    std::string model = DefaultModelDir();
    ModelLoadArgs load;  // the server loads its own model from these flags
    StoreArgs store;
    std::string api_key_file;
    int64_t max_batch_kv_mib = ServerOptions{}.max_batch_kv_bytes >> 20;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand(
      "serve", "OpenAI-compatible HTTP server with automatic, persistent prefix caching");
  app->add_option("--model", a->model, "Model directory")->capture_default_str();
  a->load.AddTo(app, /*with_pack=*/true);
  AddStoreOptions(*app, a->store);
  app->add_option("--host", a->opt.host, "Address to bind")->capture_default_str();
  app->add_option("--port", a->opt.port, "Port (0 = any free port)")->capture_default_str();
  app->add_option("--system", a->opt.system, "KV source: " + SystemNamesHelp(" | "))
      ->capture_default_str();
  app->add_option("--budget", a->opt.budget,
                  "Default fraction of prefix chunks attended (requests override with "
                  "ckv_budget; 1.0 = exact attention)")
      ->capture_default_str();
  app->add_option("--cache-bytes", a->opt.cache_bytes, "Memory cache of prefix KV (bytes)")
      ->capture_default_str();
  app->add_option("--store-min-tokens", a->opt.store_min_tokens,
                  "Contexts shorter than this are not stored")
      ->capture_default_str();
  app->add_option("--max-context", a->opt.max_context,
                  "Prompt + max_tokens bound (0 = the model's context)")
      ->capture_default_str();
  app->add_option("--max-queue", a->opt.max_queue,
                  "Requests that may wait for the engine; more are answered 429")
      ->capture_default_str();
  app->add_option("--max-running", a->opt.max_running,
                  "Sequences prefilling or decoding at once (continuous batching; each decode "
                  "step reads the weights once for all of them)")
      ->capture_default_str();
  app->add_option("--max-batch-kv-mib", a->max_batch_kv_mib,
                  "KV the running sequences may hold, counted as each one's bound (prompt + "
                  "max_tokens); admission waits beyond")
      ->capture_default_str();
  app->add_option("--prefill-layers-per-step", a->opt.prefill_layers_per_step,
                  "Layers of an admitted request's prefill run between two decode steps of "
                  "the others, times (1 + requests waiting with a free slot)")
      ->capture_default_str();
  app->add_option("--request-timeout", a->opt.request_timeout_s,
                  "Seconds from a request's arrival after which it is ended and answered 504 "
                  "(0 = none)")
      ->capture_default_str();
  app->add_option("--store-share", a->opt.store_compute_share,
                  "Share of compute background stores take while requests never pause (0 = "
                  "only when idle)")
      ->capture_default_str();
  app->add_option("--store-queue", a->opt.store_queue,
                  "Background stores that may wait; more are skipped (counted)")
      ->capture_default_str();
  auto* key = app->add_option("--api-key", a->opt.api_key, "Require 'Authorization: Bearer KEY'");
  app->add_option("--api-key-file", a->api_key_file, "Read the API key from a file")->excludes(key);
  app->add_option("--chat-template", a->opt.chat_template_file,
                  "Jinja chat template file (default: the model's tokenizer_config.json)");
  app->add_option("--served-model-name", a->opt.served_model_name,
                  "Model name clients use (default: the model directory's name)");
  app->add_option("--max-body-bytes", a->opt.max_body_bytes, "Request body limit (413 beyond)")
      ->capture_default_str();
  out.push_back(
      {app, [a]() -> int {
         ServerOptions opt = a->opt;
         if (a->max_batch_kv_mib < 1) {
           return Fail(Status::InvalidArgument("--max-batch-kv-mib must be >= 1"));
         }
         opt.max_batch_kv_bytes = a->max_batch_kv_mib << 20;
         opt.model_dir = a->model;
         opt.mmap_weights = a->load.mmap_weights;
         opt.pack_weights = a->load.pack_weights;
         if (opt.model_dir.empty()) {
           return Fail(FindDataDir().status().WithContext("no --model given"));
         }
         opt.store_dir = a->store.dir;
         opt.store_max_bytes = a->store.max_bytes;
         auto layout = a->store.Layout();
         if (!layout.ok()) return Fail(layout.status());
         opt.layout = *layout;
         if (!a->api_key_file.empty()) {
           std::ifstream in(a->api_key_file);
           if (!in) return Fail(Status::NotFound("cannot read --api-key-file " + a->api_key_file));
           std::getline(in, opt.api_key);
           if (opt.api_key.empty()) {
             return Fail(
                 Status::InvalidArgument("--api-key-file " + a->api_key_file + " is empty"));
           }
         }
         opt.log = [](const std::string& line) { std::cerr << line << std::endl; };
         // SIGINT/SIGTERM are taken by a watcher thread (sigwait), not a handler:
         // Stop() takes locks and joins threads, which a handler must not.
         sigset_t sigs;
         sigemptyset(&sigs);
         sigaddset(&sigs, SIGINT);
         sigaddset(&sigs, SIGTERM);
         pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
         signal(SIGPIPE, SIG_IGN);
         auto server = Server::Start(opt);
         if (!server.ok()) return Fail(server.status());
         Server* s = server->get();
         std::thread watcher([s, sigs] {
           int sig = 0;
           sigwait(&sigs, &sig);
           std::cerr << "ckv serve: signal " << sig << ", stopping" << std::endl;
           s->Stop();
         });
         Status ready = s->WaitReady();
         if (!ready.ok()) {
           pthread_kill(watcher.native_handle(), SIGTERM);
           watcher.join();
           return Fail(ready);
         }
         s->Wait();
         watcher.join();
         server->reset();
         std::cerr << "ckv serve: stopped" << std::endl;
         return 0;
       }});
}

}  // namespace ckv::cli
