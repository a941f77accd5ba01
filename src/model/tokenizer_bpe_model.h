// The tokenizer.json "model" of type BPE: vocabulary, merge ranks and the merge loop.
// Merges are applied lowest rank first (leftmost on ties) with a heap over a linked list
// of symbols, O(n log n) per piece, exactly reproducing Hugging Face's Word::merge_all.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tokenizer_json.h"

namespace ckv::tokenizer {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Scratch buffers reused across the pieces of one Encode call.
struct BpeWorkspace {
  struct Candidate {
    int32_t rank;
    int32_t pos;  // Index of the left symbol.
    int32_t left_id;
    int32_t right_id;
    int32_t new_id;
  };
  std::vector<int32_t> ids;   // Symbol ids; -1 once merged into the symbol on its left.
  std::vector<int32_t> prev;  // Linked list over live symbols (-1 / size() at the ends).
  std::vector<int32_t> next;
  std::vector<Candidate> heap;
  std::string scratch;
};

class BpeModel {
 public:
  static Result<BpeModel> FromJson(const Json& model, const JsonContext& ctx);

  std::optional<int32_t> Find(std::string_view token) const;
  // Largest id of the vocabulary (-1 when empty).
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  // Token string of an id; nullptr for ids the vocabulary does not use.
  const std::string* TokenOf(int32_t id) const;

  // Appends the ids of one pre-tokenized piece (valid UTF-8). `byte_level`: the initial
  // symbols are the pieces' bytes in the GPT-2 byte alphabet; otherwise they are its
  // characters, unknown ones becoming <0xXX> byte tokens (byte_fallback) or unk.
  void Tokenize(std::string_view piece, bool byte_level, BpeWorkspace* ws,
                std::vector<int32_t>* out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  const Merge* FindMerge(int32_t left, int32_t right) const;
  void InitialCharSymbols(std::string_view piece, std::vector<int32_t>* ids) const;
  void MergeAll(BpeWorkspace* ws) const;

  TokenMap vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> id_used_;
  std::unordered_map<uint64_t, Merge> merges_;
  // Id of the token for each byte in the byte-level alphabet (-1 if absent).
  std::array<int32_t, 256> byte_level_ids_{};
  // Id of "<0xXX>" for each byte (-1 if absent).
  std::array<int32_t, 256> byte_fallback_ids_{};
  std::optional<int32_t> unk_id_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
};

}  // namespace ckv::tokenizer
