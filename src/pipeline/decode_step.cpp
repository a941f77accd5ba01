// Decoding: every decoding sequence of a batch advances by one token per step. The batch's
// rows share each projection and MLP (one pass over the weights for all of them: decode is
// bound by reading the weights); attention is per row, over that sequence's own selected
// prefix rows and its suffix + generated tokens.
#include <algorithm>

#include "pipeline/emit_token.h"
#include "pipeline/sequence.h"

namespace ckv {

ReprefillSequence::ReprefillSequence(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReprefillSequence::~ReprefillSequence() = default;

ReprefillSequence::Phase ReprefillSequence::phase() const {
  return impl_->phase;
}

void ReprefillSequence::Cancel() {
  impl_->cancelled = true;
}

const ReprefillResult& ReprefillSequence::result() const {
  return impl_->res;
}

ReprefillResult ReprefillSequence::TakeResult() {
  return std::move(impl_->res);
}

int64_t ReprefillSequence::memory_bytes() const {
  const Impl& s = *impl_;
  int64_t b = s.dctx.bytes();
  for (size_t l = 0; l < s.suffix_k.size(); ++l) {
    b += static_cast<int64_t>((s.suffix_k[l].size() + s.suffix_v[l].size()) * 2);
  }
  b += static_cast<int64_t>((s.x.size() + s.q.size() + s.k.size() + s.v.size()) * 4);
  return b;
}

ReprefillSequence::Impl::~Impl() {
  ReleaseIoPath();
}

void ReprefillSequence::Impl::ReleaseIoPath() {
  if (policy_active) {
    // What the policy read and decided; on a failed prefix the recompute replaces these stats.
    policy->End().AddTo(stats);
    policy_active = false;
  }
  if (engine->prefilling == this) {
    engine->loader->set_tracer(nullptr);
    engine->prefilling = nullptr;
  }
}

void ReprefillSequence::Impl::ReleasePrefillActivations() {
  x = {};
  q = {};
  k = {};
  v = {};
  pos = {};
  scratch = Scratch{};
}

void ReprefillSequence::Impl::Finish() {
  phase = Phase::kFinished;
  if (opts.keep_exact_kv) res.exact_kv = ExactKVOf(*this, engine->model->config().kv_dim());
  // What decoding held is not needed any more; the result stays.
  suffix_k = {};
  suffix_v = {};
  dctx = DecodeContext{};
  ReleasePrefillActivations();  // a sequence cancelled in its prefill still holds them
  res.stats = stats;
  if (tracer != nullptr && !opts.trace_path.empty()) {
    // The answer stands without its trace.
    if (Status ts = tracer->WriteJson(opts.trace_path); !ts.ok()) {
      res.stats.note += (res.stats.note.empty() ? "" : "; ") + ts.ToString();
    }
  }
}

Status ReprefillEngine::DecodeStep(std::span<ReprefillSequence* const> seqs) {
  const Model& model = *s_->model;
  const ModelConfig& cfg = model.config();
  const Transformer& tf = model.transformer();
  std::vector<ReprefillSequence::Impl*> batch;
  for (ReprefillSequence* seq : seqs) {
    ReprefillSequence::Impl& s = *seq->impl_;
    if (s.engine != s_.get()) {
      return Status::InvalidArgument("the sequence belongs to another engine");
    }
    if (s.phase != ReprefillSequence::Phase::kDecode) continue;
    if (s.cancelled) {
      s.stats.cancelled = true;
      s.Finish();
      continue;
    }
    batch.push_back(&s);
  }
  if (batch.empty()) return Status::OK();
  const auto d0 = SteadyClock::now();
  const int n = static_cast<int>(batch.size());
  const int hidden = cfg.hidden_size, kv_dim = cfg.kv_dim(), q_dim = cfg.q_dim();
  std::vector<int32_t> tokens(n), positions(n);
  for (int b = 0; b < n; ++b) {
    tokens[b] = batch[b]->next;
    positions[b] = static_cast<int32_t>(batch[b]->n_p + batch[b]->len);
  }
  Scratch& scratch = s_->decode_scratch;
  std::vector<float> x(static_cast<size_t>(n) * hidden), q(static_cast<size_t>(n) * q_dim),
      k(static_cast<size_t>(n) * kv_dim), v(static_cast<size_t>(n) * kv_dim);
  tf.Embed(tokens, x.data());
  std::vector<std::vector<KVSpan>> contexts(n);
  for (int l = 0; l < cfg.num_layers; ++l) {
    tf.ProjectQKV(l, x.data(), n, positions.data(), q.data(), k.data(), v.data(), scratch);
    for (int b = 0; b < n; ++b) {
      ReprefillSequence::Impl& s = *batch[b];
      uint16_t* sk = s.suffix_k[l].data();
      uint16_t* sv = s.suffix_v[l].data();
      const size_t row = static_cast<size_t>(b) * kv_dim;
      Transformer::StoreKVRows(k.data() + row, 1, kv_dim, DType::kBF16, sk + s.len * kv_dim);
      Transformer::StoreKVRows(v.data() + row, 1, kv_dim, DType::kBF16, sv + s.len * kv_dim);
      contexts[b] = s.dctx.layers[l].spans;
      contexts[b].push_back({sk, sv, s.len + 1, s.n_p});
    }
    tf.AttendEachAndFinish(l, x.data(), n, positions.data(), q.data(), DType::kBF16, contexts,
                           scratch);
  }
  std::vector<int> rows(n);
  for (int b = 0; b < n; ++b) rows[b] = b;
  std::vector<float> logits(static_cast<size_t>(n) * cfg.vocab_size);
  tf.Logits(x.data(), rows, logits.data());
  auto sample = [&](int b) {
    batch[b]->next = batch[b]->sampler.Sample(std::span<const float>(logits).subspan(
        static_cast<size_t>(b) * cfg.vocab_size, cfg.vocab_size));
  };
  if (n == 1) {
    sample(0);
  } else {
    // Each row draws from its own Sampler, so the rows' draws run side by side: a draw at a
    // temperature reads the whole vocabulary (0.6 ms at 152K tokens, up to ~7 ms for a wide
    // nucleus), and 8 of them one after another would sit on one core beside an idle one.
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n; ++b) sample(b);
  }
  const double step_ms = MsSince(d0);
  for (int b = 0; b < n; ++b) {
    ReprefillSequence::Impl& s = *batch[b];
    ++s.len;
    const auto e0 = SteadyClock::now();
    const bool more = EmitToken(s.next, cfg, s.opts, s.res, s.stats);
    s.stats.decode_ms += step_ms + MsSince(e0);
    ++s.emitted;
    if (!more || s.emitted >= s.opts.max_tokens) s.Finish();
  }
  return Status::OK();
}

}  // namespace ckv
