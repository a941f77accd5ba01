// ckv bench tokenizer: how fast a model's tokenizer encodes and decodes a text file. Kept out of
// the unit tests (issue 12: timing belongs in benchmarks), where only the ids are checked.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "ckv/tokenizer.h"
#include "cli_common.h"

namespace ckv::cli {

void RegisterBenchTokenizer(CLI::App& bench, std::vector<Command>& out) {
  struct Args {
    std::string model = DefaultModelDir();
    std::string text;
    int repeat = 5;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = bench.add_subcommand(
      "tokenizer", "Tokenizer load time, encode and decode speed on a text file (best of N)");
  app->add_option("--model", a->model, "Model (or tokenizer) directory")->capture_default_str();
  app->add_option("--text", a->text, "UTF-8 text file to encode")->required();
  app->add_option("--repeat", a->repeat, "Timed passes (the best is reported)")
      ->capture_default_str();
  app->add_flag("--json", a->json, "Print JSON on one line");
  out.push_back({app, [a]() -> int {
                   if (a->repeat < 1) return Fail(Status::InvalidArgument("--repeat must be >= 1"));
                   auto text = ReadTextArg(a->text);
                   if (!text.ok()) return Fail(text.status());
                   const auto t_load = std::chrono::steady_clock::now();
                   auto tok = Tokenizer::FromDirectory(a->model);
                   if (!tok.ok()) return Fail(tok.status());
                   const double load_s = SecondsSince(t_load);
                   double encode_s = 1e30, decode_s = 1e30;
                   std::vector<int32_t> ids;
                   for (int r = 0; r < a->repeat; ++r) {
                     auto t0 = std::chrono::steady_clock::now();
                     auto enc = (*tok)->Encode(*text, false);
                     if (!enc.ok()) return Fail(enc.status().WithContext("--text"));
                     encode_s = std::min(encode_s, SecondsSince(t0));
                     ids = std::move(*enc);
                     t0 = std::chrono::steady_clock::now();
                     auto dec = (*tok)->Decode(ids, false);
                     if (!dec.ok()) return Fail(dec.status());
                     decode_s = std::min(decode_s, SecondsSince(t0));
                   }
                   const double mb = text->size() / 1e6;
                   nlohmann::json j{{"model", a->model},
                                    {"text_bytes", text->size()},
                                    {"tokens", ids.size()},
                                    {"load_ms", load_s * 1e3},
                                    {"encode_ms", encode_s * 1e3},
                                    {"encode_mb_per_s", mb / encode_s},
                                    {"encode_tokens_per_s", ids.size() / encode_s},
                                    {"decode_ms", decode_s * 1e3},
                                    {"decode_tokens_per_s", ids.size() / decode_s}};
                   std::cout << (a->json ? j.dump() : j.dump(2)) << "\n";
                   return 0;
                 }});
}

}  // namespace ckv::cli
