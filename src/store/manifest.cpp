#include "store/manifest.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "store/checksum.h"

namespace ckv::store_internal {
namespace {

constexpr const char* kFormat = "ckv-prefix-manifest";
constexpr int kVersion = 1;
constexpr const char* kTrailerTag = "\n#xxh3=";
constexpr size_t kTrailerBytes = 7 + 16 + 1;

}  // namespace

int64_t Manifest::n_chunks() const {
  const int64_t c = layout.chunk_tokens;
  return (n_tokens() + c - 1) / c;
}

int64_t Manifest::own_bytes() const {
  int64_t b = 0;
  for (const SegmentRef& s : segments) b += s.own ? s.bytes() : 0;
  return b;
}

int64_t Manifest::total_bytes() const {
  int64_t b = 0;
  for (const SegmentRef& s : segments) b += s.bytes();
  return b;
}

bool IsHexId(const std::string& s) {
  return ParseHex64(s).has_value();
}

std::string EncodeManifest(const Manifest& m) {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["id"] = m.id;
  j["fingerprint"] = Hex64(m.fingerprint);
  j["layout"] = {{"kind", LayoutKindName(m.layout.kind)},
                 {"chunk_tokens", m.layout.chunk_tokens},
                 {"period_layers", m.layout.period_layers},
                 {"probe_heads", m.layout.probe_heads}};
  j["model"] = {{"num_layers", m.shape.num_layers},
                {"num_heads", m.shape.num_heads},
                {"num_kv_heads", m.shape.num_kv_heads},
                {"head_dim", m.shape.head_dim}};
  j["dtype"] = "bf16";
  j["parent"] = m.parent_id;
  j["created_unix_ms"] = m.created_unix_ms;
  j["n_tokens"] = m.n_tokens();
  nlohmann::ordered_json segs = nlohmann::ordered_json::array();
  for (const SegmentRef& s : m.segments) {
    nlohmann::ordered_json sums = nlohmann::ordered_json::array();
    for (uint64_t c : s.summary_checksums) sums.push_back(Hex64(c));
    segs.push_back({{"name", s.name},
                    {"first_chunk", s.first_chunk},
                    {"stored_chunks", s.stored_chunks},
                    {"stored_tokens", s.stored_tokens},
                    {"used_chunks", s.used_chunks},
                    {"own", s.own},
                    {"kv_bytes", s.kv_bytes},
                    {"sum_bytes", s.sum_bytes},
                    {"table_xxh3", Hex64(s.table_checksum)},
                    {"summary_xxh3", sums}});
  }
  j["segments"] = segs;
  j["tokens"] = m.tokens;
  std::string body = j.dump();
  const uint64_t sum = Checksum(body.data(), body.size());
  body += kTrailerTag;
  body += Hex64(sum);
  body += '\n';
  return body;
}

Result<Manifest> DecodeManifest(const std::string& bytes, const std::string& path) {
  auto bad = [&](const std::string& what) {
    return Status::Corruption("manifest " + path + ": " + what);
  };
  if (bytes.size() < kTrailerBytes ||
      bytes.compare(bytes.size() - kTrailerBytes, 7, kTrailerTag) != 0 || bytes.back() != '\n') {
    return bad("missing checksum trailer (truncated?)");
  }
  const size_t body_len = bytes.size() - kTrailerBytes;
  const auto stored = ParseHex64(std::string_view(bytes).substr(body_len + 7, 16));
  if (!stored) return bad("malformed checksum trailer");
  const uint64_t actual = Checksum(bytes.data(), body_len);
  if (*stored != actual) {
    return bad("checksum mismatch (stored " + Hex64(*stored) + ", computed " + Hex64(actual) + ")");
  }
  Manifest m;
  try {
    const nlohmann::json j = nlohmann::json::parse(bytes.begin(), bytes.begin() + long(body_len));
    if (j.at("format").get<std::string>() != kFormat) return bad("not a prefix manifest");
    if (j.at("version").get<int>() != kVersion) {
      return bad("unsupported version " + j.at("version").dump());
    }
    m.id = j.at("id").get<std::string>();
    const auto fp = ParseHex64(j.at("fingerprint").get<std::string>());
    if (!fp) return bad("malformed fingerprint");
    m.fingerprint = *fp;
    const auto& jl = j.at("layout");
    const auto kind = ParseLayoutKind(jl.at("kind").get<std::string>());
    if (!kind) return bad("unknown layout kind " + jl.at("kind").dump());
    m.layout.kind = *kind;
    m.layout.chunk_tokens = jl.at("chunk_tokens").get<int>();
    m.layout.period_layers = jl.at("period_layers").get<int>();
    m.layout.probe_heads = jl.at("probe_heads").get<int>();
    m.layout = m.layout.Normalized();
    const auto& jm = j.at("model");
    m.shape.num_layers = jm.at("num_layers").get<int>();
    m.shape.num_heads = jm.at("num_heads").get<int>();
    m.shape.num_kv_heads = jm.at("num_kv_heads").get<int>();
    m.shape.head_dim = jm.at("head_dim").get<int>();
    if (j.at("dtype").get<std::string>() != "bf16") return bad("unsupported dtype");
    m.parent_id = j.at("parent").get<std::string>();
    m.created_unix_ms = j.at("created_unix_ms").get<int64_t>();
    m.tokens = j.at("tokens").get<std::vector<int32_t>>();
    if (j.at("n_tokens").get<int64_t>() != m.n_tokens()) return bad("token count mismatch");
    for (const auto& js : j.at("segments")) {
      SegmentRef s;
      s.name = js.at("name").get<std::string>();
      s.first_chunk = js.at("first_chunk").get<int64_t>();
      s.stored_chunks = js.at("stored_chunks").get<int64_t>();
      s.stored_tokens = js.at("stored_tokens").get<int64_t>();
      s.used_chunks = js.at("used_chunks").get<int64_t>();
      s.own = js.at("own").get<bool>();
      s.kv_bytes = js.at("kv_bytes").get<uint64_t>();
      s.sum_bytes = js.at("sum_bytes").get<uint64_t>();
      const auto tc = ParseHex64(js.at("table_xxh3").get<std::string>());
      if (!tc) return bad("malformed table checksum");
      s.table_checksum = *tc;
      for (const auto& h : js.at("summary_xxh3")) {
        const auto v = ParseHex64(h.get<std::string>());
        if (!v) return bad("malformed summary checksum");
        s.summary_checksums.push_back(*v);
      }
      m.segments.push_back(std::move(s));
    }
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("malformed: ") + e.what());
  }

  // Consistency.
  if (!IsHexId(m.id)) return bad("malformed id");
  const Status layout_ok = ValidateLayout(m.layout, m.shape);
  if (!layout_ok.ok()) return bad(layout_ok.message());
  if (m.tokens.empty()) return bad("no tokens");
  const int64_t c = m.layout.chunk_tokens;
  const int64_t n = m.n_tokens();
  int64_t next = 0;
  for (const SegmentRef& s : m.segments) {
    const std::string where = "segment " + s.name + ": ";
    if (!IsHexId(s.name)) return bad("malformed segment name");
    if (s.first_chunk != next) return bad(where + "does not start where the previous one ends");
    if (s.stored_chunks < 1 || s.used_chunks < 1 || s.used_chunks > s.stored_chunks ||
        s.stored_tokens <= (s.stored_chunks - 1) * c || s.stored_tokens > s.stored_chunks * c) {
      return bad(where + "inconsistent chunk counts");
    }
    // Real tokens of the last used chunk must agree between segment and prefix (earlier chunks
    // are full in both).
    const int64_t last = s.first_chunk + s.used_chunks - 1;
    if (last * c >= n) return bad(where + "extends past the prefix's tokens");
    const int64_t prefix_real = std::min(c, n - last * c);
    const int64_t seg_real = std::min(c, s.stored_tokens - (s.used_chunks - 1) * c);
    if (prefix_real != seg_real) return bad(where + "partial chunk in the middle of the prefix");
    const SegmentGeometry g(m.layout, m.shape, s.stored_chunks);
    if (s.kv_bytes != g.kv_file_bytes() || s.sum_bytes != g.sum_file_bytes()) {
      return bad(where + "file sizes do not match the layout");
    }
    if (s.summary_checksums.size() != size_t(m.shape.num_layers)) {
      return bad(where + "wrong number of summary checksums");
    }
    next += s.used_chunks;
  }
  if (next != m.n_chunks()) return bad("segments do not cover the prefix's chunks");
  return m;
}

}  // namespace ckv::store_internal
