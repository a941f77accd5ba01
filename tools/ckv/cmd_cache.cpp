// ckv cache put | ls | info | rm | verify
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "ckv/text_file.h"
#include "cli_common.h"

namespace ckv::cli {
namespace {

nlohmann::json InfoJson(const PrefixInfo& p) {
  return {{"id", p.id},
          {"n_tokens", p.n_tokens},
          {"n_chunks", p.n_chunks},
          {"layout", p.layout.ToString()},
          {"num_layers", p.num_layers},
          {"bytes", p.bytes},
          {"total_bytes", p.total_bytes},
          {"segments", p.num_segments},
          {"parent_id", p.parent_id},
          {"fingerprint", FingerprintHex(p.fingerprint)},
          {"created_unix_ms", p.created_unix_ms},
          {"last_used_unix_ms", p.last_used_unix_ms}};
}

Result<std::string> ReadText(const std::string& path) {
  auto text = ReadTextFile(path);
  if (!text.ok()) return text.status().WithContext("--file");
  return text;
}

}  // namespace

void RegisterCache(CLI::App& root, std::vector<Command>& out) {
  CLI::App* cache =
      root.add_subcommand("cache", "The persistent prefix KV store (put, ls, info, rm, verify)");
  cache->require_subcommand(1);

  struct Args {
    std::string model = DefaultModelDir();
    ModelLoadArgs load;
    StoreArgs store;
    std::string file, text, id;
    bool json = false;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();

  CLI::App* put = cache->add_subcommand("put", "Prefill a document and persist its KV as a prefix");
  put->add_option("--model", a->model, "Model directory")->capture_default_str();
  a->load.AddTo(put, /*with_pack=*/false);
  AddStoreOptions(*put, a->store);
  auto* file_opt = put->add_option("--file", a->file, "UTF-8 text file to store");
  auto* text_opt = put->add_option("--text", a->text, "Text to store");
  file_opt->excludes(text_opt);
  put->add_flag("--json", a->json, "Print the stored prefix as JSON");
  put->add_flag("--quiet", a->quiet, "No progress bar");
  out.push_back(
      {put, [a, file_opt, text_opt]() -> int {
         if (file_opt->count() == 0 && text_opt->count() == 0) {
           return Fail(Status::InvalidArgument("give --file or --text"));
         }
         std::string text = a->text;
         if (file_opt->count() > 0) {
           auto t = ReadText(a->file);
           if (!t.ok()) return Fail(t.status());
           text = *t;
         }
         auto model = LoadModel(a->model, a->load);
         if (!model.ok()) return Fail(model.status());
         if ((*model)->tokenizer() == nullptr)
           return Fail(Status::NotFound("model has no tokenizer"));
         auto ids = (*model)->tokenizer()->Encode(text, true);
         if (!ids.ok()) return Fail(ids.status().WithContext("input text"));
         if (static_cast<int64_t>(ids->size()) > (*model)->config().max_position_embeddings) {
           return Fail(
               Status::OutOfRange("document of " + std::to_string(ids->size()) +
                                  " tokens exceeds the model's context of " +
                                  std::to_string((*model)->config().max_position_embeddings)));
         }
         auto store = OpenStore(a->store);
         if (!store.ok()) return Fail(store.status());
         auto layout = a->store.Layout();
         if (!layout.ok()) return Fail(layout.status());
         const bool bar = !a->quiet && !a->json;
         auto info = StorePrefix(**model, **store, *layout, *ids, [bar](double f) {
           if (!bar) return;
           const int w = 40, done = static_cast<int>(f * w);
           std::cerr << "\r[" << std::string(done, '#') << std::string(w - done, ' ') << "] "
                     << static_cast<int>(f * 100) << "%" << std::flush;
         });
         if (bar) std::cerr << "\n";
         if (!info.ok()) return Fail(info.status());
         if (a->json) {
           std::cout << InfoJson(*info).dump() << "\n";
         } else {
           std::cout << "stored prefix " << info->id << ": " << info->n_tokens << " tokens, "
                     << info->n_chunks << " chunks, " << info->bytes << " bytes written ("
                     << info->total_bytes << " referenced)\n";
         }
         return 0;
       }});

  CLI::App* ls = cache->add_subcommand("ls", "List stored prefixes");
  AddStoreOptions(*ls, a->store, /*layout=*/false);
  ls->add_flag("--json", a->json, "Print JSON");
  out.push_back({ls, [a]() -> int {
                   auto store = OpenStore(a->store);
                   if (!store.ok()) return Fail(store.status());
                   nlohmann::json arr = nlohmann::json::array();
                   for (const auto& p : (*store)->List()) {
                     if (a->json) {
                       arr.push_back(InfoJson(p));
                     } else {
                       std::cout << p.id << "  " << p.n_tokens << " tokens  " << p.total_bytes
                                 << " bytes  " << p.layout.ToString()
                                 << (p.parent_id.empty() ? "" : "  parent " + p.parent_id) << "\n";
                     }
                   }
                   if (a->json) std::cout << arr.dump() << "\n";
                   return 0;
                 }});

  for (const char* name : {"info", "rm", "verify"}) {
    const std::string cmd = name;
    CLI::App* sub = cache->add_subcommand(
        cmd, cmd == "info" ? "Show one stored prefix"
             : cmd == "rm" ? "Remove a stored prefix"
                           : "Check every checksum (of one prefix, or of all)");
    AddStoreOptions(*sub, a->store, /*layout=*/false);
    auto* id_opt = sub->add_option("id", a->id, "Prefix id");
    if (cmd != "verify") id_opt->required();
    sub->add_flag("--json", a->json, "Print JSON");
    out.push_back({sub, [a, cmd, id_opt]() -> int {
                     auto store = OpenStore(a->store);
                     if (!store.ok()) return Fail(store.status());
                     if (cmd == "info") {
                       auto info = (*store)->Info(a->id);
                       if (!info.ok()) return Fail(info.status());
                       std::cout << InfoJson(*info).dump(a->json ? -1 : 2) << "\n";
                       return 0;
                     }
                     if (cmd == "rm") {
                       Status st = (*store)->Remove(a->id);
                       if (!st.ok()) return Fail(st);
                       if (a->json) {
                         std::cout << nlohmann::json{{"removed", a->id}}.dump() << "\n";
                       } else {
                         std::cout << "removed " << a->id << "\n";
                       }
                       return 0;
                     }
                     std::vector<std::string> ids;
                     if (id_opt->count() > 0) {
                       ids.push_back(a->id);
                     } else {
                       for (const auto& p : (*store)->List()) ids.push_back(p.id);
                     }
                     nlohmann::json arr = nlohmann::json::array();
                     int bad = 0;
                     for (const auto& id : ids) {
                       Status st = (*store)->Verify(id);
                       if (!st.ok()) ++bad;
                       if (a->json) {
                         arr.push_back({{"id", id},
                                        {"ok", st.ok()},
                                        {"error", st.ok() ? "" : st.ToString()}});
                       } else {
                         std::cout << id << ": " << (st.ok() ? "ok" : st.ToString()) << "\n";
                       }
                     }
                     if (a->json) std::cout << arr.dump() << "\n";
                     return bad == 0 ? 0 : 1;
                   }});
  }
}

}  // namespace ckv::cli
