#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "ckv/generate.h"
#include "ckv/prefix_store.h"
#include "ckv/reprefill.h"
#include "cli_common.h"
#include "kernels/attention.h"
#include "kernels/linear.h"
#include "memory_read.h"

namespace ckv::cli {
namespace {

using Clock = std::chrono::steady_clock;

// Multiply-add work of one forward over n new tokens after `past` cached ones.
double ForwardFlops(const ModelConfig& c, int64_t n, int64_t past) {
  const double h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;
  const double linear_per_token = h * q + 2 * h * kv + q * h + 3 * h * inter;
  // Causal attention: each new token sees past + its own prefix; QK^T and PV.
  const double keys_seen = n * past + n * (n + 1) / 2.0;
  const double attn = 2.0 * keys_seen * q;
  return 2.0 * c.num_layers * (n * linear_per_token + attn) + 2.0 * h * c.vocab_size;
}

// Bytes of weights one decode step reads: every projection once, and the output head.
double DecodeWeightBytes(const ModelConfig& c, const std::string& dtype) {
  const double h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), inter = c.intermediate_size;
  const double per_layer = h * q + 2 * h * kv + q * h + 3 * h * inter;
  const double elem = dtype == "f32" ? 4 : 2;
  return elem * (c.num_layers * per_layer + h * c.vocab_size);
}

// Decode tokens/s of `batch` sequences advancing together (the server's batched step): each
// sequence a plain prefill of `prompt` random tokens, then `steps` steps of all of them.
Result<double> BatchedDecodeRate(const Model& model, int batch, int prompt, int steps,
                                 std::mt19937& rng) {
  const ModelConfig& c = model.config();
  const std::string dir =
      std::filesystem::temp_directory_path() / ("ckv-bench-batch-" + std::to_string(::getpid()));
  struct RemoveDir {
    std::string d;
    ~RemoveDir() {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  } cleanup{dir};
  StoreOptions so;
  so.sync = false;
  CKV_ASSIGN_OR_RETURN(auto store, PrefixStore::Open(dir, so));
  ReprefillEngine::Config ec;
  CKV_ASSIGN_OR_RETURN(auto engine, ReprefillEngine::Create(model, *store, ec));
  std::uniform_int_distribution<int32_t> tok(0, std::min(c.vocab_size, 32000) - 1);
  ReprefillOptions opts;
  opts.system = "recompute";
  opts.max_tokens = steps + 1;
  opts.on_token = [](int32_t) { return true; };
  std::vector<std::unique_ptr<ReprefillSequence>> seqs;
  std::vector<ReprefillSequence*> ptrs;
  for (int b = 0; b < batch; ++b) {
    std::vector<int32_t> ids(prompt);
    for (auto& id : ids) id = tok(rng);
    CKV_ASSIGN_OR_RETURN(auto seq, engine->Begin(ids, opts));
    CKV_RETURN_IF_ERROR(engine->Prefill(*seq));
    ptrs.push_back(seq.get());
    seqs.push_back(std::move(seq));
  }
  int64_t tokens = 0;
  const auto t0 = Clock::now();
  for (int s = 0; s < steps; ++s) {
    int64_t before = 0, after = 0;
    for (auto* p : ptrs) before += static_cast<int64_t>(p->result().generated_ids.size());
    CKV_RETURN_IF_ERROR(engine->DecodeStep(ptrs));
    for (auto* p : ptrs) after += static_cast<int64_t>(p->result().generated_ids.size());
    tokens += after - before;
  }
  return tokens / SecondsSince(t0);
}

int RunGemm(int m, int k, int n, const std::string& dtype_name, int repeat) {
  const DType dt = dtype_name == "f32"   ? DType::kF32
                   : dtype_name == "f16" ? DType::kF16
                                         : DType::kBF16;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 0.02f);
  std::vector<uint16_t> w16(static_cast<size_t>(n) * k);
  std::vector<float> w32(static_cast<size_t>(n) * k);
  for (size_t i = 0; i < w32.size(); ++i) {
    w32[i] = nd(rng);
    w16[i] = dt == DType::kF16 ? F32ToF16(w32[i]) : F32ToBf16(w32[i]);
  }
  std::vector<float> x(static_cast<size_t>(m) * k, 0.5f), y(static_cast<size_t>(m) * n);
  const void* w = dt == DType::kF32 ? static_cast<const void*>(w32.data()) : w16.data();
  nlohmann::json rows = nlohmann::json::array();
  for (bool pack : {false, true}) {
    auto lin = Linear::Create(w, dt, n, k, LinearOptions{pack});
    if (!lin.ok()) return Fail(lin.status());
    (*lin)->Forward(x.data(), m, y.data());
    auto t0 = Clock::now();
    for (int r = 0; r < repeat; ++r) (*lin)->Forward(x.data(), m, y.data());
    const double s = SecondsSince(t0) / repeat;
    rows.push_back({{"m", m},
                    {"k", k},
                    {"n", n},
                    {"dtype", dtype_name},
                    {"packed", pack},
                    {"ms", s * 1e3},
                    {"gflops", 2.0 * m * k * n / s / 1e9}});
  }
  std::cout << rows.dump(2) << "\n";
  return 0;
}

int RunAttention(int queries, int prefix, int heads, int kv_heads, int head_dim, int repeat,
                 bool mass_only) {
  const int kvd = kv_heads * head_dim;
  const int64_t keys = int64_t{prefix} + queries;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint16_t> k(keys * kvd), v(keys * kvd);
  for (auto& e : k) e = F32ToBf16(nd(rng));
  for (auto& e : v) e = F32ToBf16(nd(rng));
  std::vector<float> q(static_cast<size_t>(queries) * heads * head_dim), out(q.size());
  for (auto& e : q) e = nd(rng);
  std::vector<int32_t> pos(queries);
  for (int i = 0; i < queries; ++i) pos[i] = prefix + i;
  const KVSpan span{k.data(), v.data(), keys, 0};
  const AttentionShape shape{heads, kv_heads, head_dim, DType::kBF16};
  std::vector<float> mass(keys);
  auto once = [&] {
    if (mass_only) {
      AttentionMass(q.data(), queries, pos.data(), {&span, 1}, shape, mass.data());
    } else {
      Attention(q.data(), queries, pos.data(), {&span, 1}, shape, out.data());
    }
  };
  once();
  auto t0 = Clock::now();
  for (int r = 0; r < repeat; ++r) once();
  const double s = SecondsSince(t0) / repeat;
  // QK^T and PV over the visible keys of each query.
  const double visible = double(queries) * prefix + queries * (queries + 1) / 2.0;
  // QK^T and PV; the probability-only kernel does QK^T twice and no PV.
  const double flops = 4.0 * visible * heads * head_dim;
  nlohmann::json j{{"kernel", mass_only ? "mass" : "attention"},
                   {"queries", queries},
                   {"prefix", prefix},
                   {"heads", heads},
                   {"kv_heads", kv_heads},
                   {"head_dim", head_dim},
                   {"ms", s * 1e3},
                   {"gflops", flops / s / 1e9}};
  std::cout << j.dump() << "\n";
  return 0;
}

}  // namespace

void RegisterBench(CLI::App& root, std::vector<Command>& out) {
  CLI::App* bench =
      root.add_subcommand("bench", "Benchmarks (GEMM rate, model prefill/decode speed)");
  bench->require_subcommand(1);
  RegisterBenchIo(*bench, out);
  RegisterBenchReprefill(*bench, out);
  RegisterBenchStore(*bench, out);
  RegisterBenchServe(*bench, out);
  RegisterBenchMemory(*bench, out);
  RegisterBenchTokenizer(*bench, out);

  struct GemmArgs {
    int m = 512, k = 896, n = 4864, repeat = 20;
    std::string dtype = "bf16";
  };
  auto ga = std::make_shared<GemmArgs>();
  CLI::App* gemm =
      bench->add_subcommand("gemm", "GEMM rate of the Linear kernel, plain and packed weights");
  gemm->add_option("--m", ga->m, "Rows of the activation")->capture_default_str();
  gemm->add_option("--k", ga->k, "Input features")->capture_default_str();
  gemm->add_option("--n", ga->n, "Output features")->capture_default_str();
  gemm->add_option("--dtype", ga->dtype, "Weight dtype: bf16 | f16 | f32")->capture_default_str();
  gemm->add_option("--repeat", ga->repeat, "Timed repetitions")->capture_default_str();
  out.push_back({gemm, [ga]() { return RunGemm(ga->m, ga->k, ga->n, ga->dtype, ga->repeat); }});

  struct AttnArgs {
    int queries = 512, prefix = 0, heads = 14, kv_heads = 2, head_dim = 64, repeat = 5;
    bool mass = false;
  };
  auto aa = std::make_shared<AttnArgs>();
  CLI::App* attn = bench->add_subcommand("attention", "Attention kernel rate (bf16 KV, causal)");
  attn->add_option("--queries", aa->queries, "New tokens (queries)")->capture_default_str();
  attn->add_option("--prefix", aa->prefix, "Cached tokens before them")->capture_default_str();
  attn->add_option("--heads", aa->heads, "Query heads")->capture_default_str();
  attn->add_option("--kv-heads", aa->kv_heads, "KV heads")->capture_default_str();
  attn->add_option("--head-dim", aa->head_dim, "Head dimension")->capture_default_str();
  attn->add_option("--repeat", aa->repeat, "Timed repetitions")->capture_default_str();
  attn->add_flag("--mass-only", aa->mass,
                 "Time AttentionMass (probabilities only, for chunk scoring)");
  out.push_back({attn, [aa]() {
                   return RunAttention(aa->queries, aa->prefix, aa->heads, aa->kv_heads,
                                       aa->head_dim, aa->repeat, aa->mass);
                 }});

  struct ModelArgs {
    std::string model = DefaultModelDir();
    int prompt_tokens = 512;
    int decode_tokens = 32;
    int repeat = 3;
    ModelLoadArgs load;
    bool json = false;
    std::vector<int> batches;
    int64_t memory_mib = 1024;
  };
  auto ma = std::make_shared<ModelArgs>();
  CLI::App* mb = bench->add_subcommand("model", "Prefill and decode speed of a model (random ids)");
  mb->add_option("--model", ma->model, "Model directory")->capture_default_str();
  mb->add_option("--prompt-tokens", ma->prompt_tokens, "Prompt length for prefill")
      ->capture_default_str();
  mb->add_option("--decode-tokens", ma->decode_tokens, "Decode steps after the prompt")
      ->capture_default_str();
  mb->add_option("--repeat", ma->repeat, "Repetitions (best is reported)")->capture_default_str();
  ma->load.AddTo(mb, /*with_pack=*/true);
  mb->add_flag("--json", ma->json, "Print JSON");
  mb->add_option("--batch", ma->batches,
                 "Also decode this many sequences together (a list: the server's batched "
                 "step, tokens/s summed over the batch)")
      ->delimiter(',');
  mb->add_option("--memory-mib", ma->memory_mib,
                 "Also measure the streaming read bandwidth (as `ckv bench memory`) on a buffer "
                 "of this size between decode runs and report decode's fraction of it (0: off)")
      ->capture_default_str();
  out.push_back({mb, [ma]() -> int {
                   auto t_load = Clock::now();
                   auto model = LoadModel(ma->model, ma->load);
                   if (!model.ok()) return Fail(model.status());
                   const double load_s = SecondsSince(t_load);
                   const ModelConfig& c = (*model)->config();
                   std::mt19937 rng(7);
                   std::uniform_int_distribution<int32_t> tok(0, std::min(c.vocab_size, 32000) - 1);
                   std::vector<int32_t> ids(ma->prompt_tokens);
                   for (auto& id : ids) id = tok(rng);
                   if (ma->memory_mib < 0) {
                     return Fail(Status::InvalidArgument("--memory-mib must be >= 0"));
                   }
                   std::optional<ReadBuffer> read_buffer;
                   if (ma->memory_mib > 0) {
                     auto rb = ReadBuffer::Create(static_cast<size_t>(ma->memory_mib) << 20);
                     if (!rb.ok()) return Fail(rb.status());
                     read_buffer.emplace(std::move(*rb));
                   }
                   double best_prefill = 1e30, best_decode = 1e30, best_memory = 0;
                   std::vector<float> logits;
                   for (int r = 0; r < ma->repeat; ++r) {
                     KVCache kv = (*model)->NewCache(KVPrecision::kBF16,
                                                     ma->prompt_tokens + ma->decode_tokens);
                     auto t0 = Clock::now();
                     Status st = (*model)->Forward(ids, kv, &logits);
                     if (!st.ok()) return Fail(st);
                     best_prefill = std::min(best_prefill, SecondsSince(t0));
                     t0 = Clock::now();
                     for (int d = 0; d < ma->decode_tokens; ++d) {
                       const int32_t one[1] = {Argmax(logits) % std::min(c.vocab_size, 32000)};
                       st = (*model)->Forward(one, kv, &logits);
                       if (!st.ok()) return Fail(st);
                     }
                     best_decode = std::min(best_decode, SecondsSince(t0));
                     // Between decode runs, so both see the machine in the same minutes.
                     for (int p = 0; read_buffer && p < 2; ++p) {
                       best_memory = std::max(best_memory, read_buffer->ReadPassGbps());
                     }
                   }
                   const double pf_flops = ForwardFlops(c, ma->prompt_tokens, 0);
                   nlohmann::json j{{"model", ma->model},
                                    {"threads", omp_get_max_threads()},
                                    {"load_s", load_s},
                                    {"prompt_tokens", ma->prompt_tokens},
                                    {"prefill_s", best_prefill},
                                    {"prefill_tokens_per_s", ma->prompt_tokens / best_prefill},
                                    {"prefill_gflops", pf_flops / best_prefill / 1e9},
                                    {"decode_tokens", ma->decode_tokens},
                                    {"decode_tokens_per_s", ma->decode_tokens / best_decode},
                                    {"packed_weights", ma->load.pack_weights},
                                    {"mmap_weights", ma->load.mmap_weights}};
                   // What decode streams per token, and the rate at which it read it: compare
                   // with `ckv bench memory`.
                   const double wbytes = DecodeWeightBytes(c, (*model)->weight_dtype_name());
                   j["decode_weight_bytes"] = wbytes;
                   const double decode_gbps = wbytes * ma->decode_tokens / best_decode / 1e9;
                   j["decode_read_gbps"] = decode_gbps;
                   if (read_buffer) {
                     // Best against best: decode's read rate as a fraction of the bound.
                     j["memory_read_gbps_best"] = best_memory;
                     j["decode_read_fraction"] = decode_gbps / best_memory;
                   }
                   for (int b : ma->batches) {
                     if (b < 1) return Fail(Status::InvalidArgument("--batch values must be >= 1"));
                     double best = 0;
                     for (int r = 0; r < ma->repeat; ++r) {
                       auto rate =
                           BatchedDecodeRate(**model, b, ma->prompt_tokens, ma->decode_tokens, rng);
                       if (!rate.ok()) return Fail(rate.status());
                       best = std::max(best, *rate);
                     }
                     j["batch_decode_tokens_per_s"][std::to_string(b)] = best;
                   }
                   if (ma->json) {
                     std::cout << j.dump() << "\n";
                   } else {
                     std::cout << j.dump(2) << "\n";
                   }
                   return 0;
                 }});
}

}  // namespace ckv::cli
