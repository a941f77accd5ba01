#include "model/tokenizer_bpe_model.h"

#include <algorithm>
#include <climits>
#include <cstdio>

#include "model/tokenizer_byte_level.h"
#include "model/tokenizer_unicode.h"

namespace ckv::tokenizer {
namespace {

// Min-heap order on (rank, pos): lowest rank first, leftmost among equal ranks.
bool HeapAfter(const BpeWorkspace::Candidate& a, const BpeWorkspace::Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

Status CheckEmptyOrNull(const Json& model, std::string_view key, const JsonContext& ctx) {
  const Json* value = OptionalMember(model, key);
  if (value == nullptr) return Status::OK();
  if (value->is_string() && value->get<std::string>().empty()) return Status::OK();
  return ctx.Child(key).Unsupported(value->is_string() ? value->get<std::string>() : value->dump());
}

}  // namespace

Result<BpeModel> BpeModel::FromJson(const Json& model, const JsonContext& ctx) {
  CKV_RETURN_IF_ERROR(ExpectObject(model, ctx));
  BpeModel bpe;
  if (const Json* dropout = OptionalMember(model, "dropout");
      dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return ctx.Child("dropout").Unsupported(dropout->dump());
  }
  CKV_RETURN_IF_ERROR(CheckEmptyOrNull(model, "continuing_subword_prefix", ctx));
  CKV_RETURN_IF_ERROR(CheckEmptyOrNull(model, "end_of_word_suffix", ctx));
  CKV_ASSIGN_OR_RETURN(bpe.byte_fallback_, OptionalBool(model, "byte_fallback", false, ctx));
  CKV_ASSIGN_OR_RETURN(bpe.fuse_unk_, OptionalBool(model, "fuse_unk", false, ctx));
  CKV_ASSIGN_OR_RETURN(bpe.ignore_merges_, OptionalBool(model, "ignore_merges", false, ctx));

  // Vocabulary.
  const JsonContext vocab_ctx = ctx.Child("vocab");
  CKV_ASSIGN_OR_RETURN(const Json* vocab, RequiredMember(model, "vocab", ctx));
  CKV_RETURN_IF_ERROR(ExpectObject(*vocab, vocab_ctx));
  bpe.vocab_.reserve(vocab->size());
  int64_t max_id = -1;
  for (const auto& [token, id_json] : vocab->items()) {
    if (!id_json.is_number_integer()) {
      return vocab_ctx.Invalid("entry \"" + token + "\" must be an integer id");
    }
    const int64_t id = id_json.get<int64_t>();
    if (id < 0 || id >= INT32_MAX) {
      return vocab_ctx.Invalid("entry \"" + token + "\" has out-of-range id " + std::to_string(id));
    }
    bpe.vocab_.emplace(token, static_cast<int32_t>(id));
    max_id = std::max(max_id, id);
  }
  bpe.id_to_token_.resize(static_cast<size_t>(max_id + 1));
  bpe.id_used_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : bpe.vocab_) {
    if (bpe.id_used_[id]) {
      return vocab_ctx.Invalid("maps two tokens to id " + std::to_string(id));
    }
    bpe.id_to_token_[id] = token;
    bpe.id_used_[id] = true;
  }

  // Merges: "left right" strings (older files) or ["left", "right"] pairs.
  const JsonContext merges_ctx = ctx.Child("merges");
  CKV_ASSIGN_OR_RETURN(const Json* merges, RequiredMember(model, "merges", ctx));
  CKV_RETURN_IF_ERROR(ExpectArray(*merges, merges_ctx));
  if (merges->size() >= INT32_MAX) return merges_ctx.Invalid("has too many entries");
  bpe.merges_.reserve(merges->size());
  std::string merged;
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const Json& entry = (*merges)[rank];
    std::string_view left, right;
    if (entry.is_string()) {
      const std::string& line = entry.get_ref<const std::string&>();
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        return merges_ctx.Index(rank).Invalid("must be two tokens separated by one space");
      }
      left = std::string_view(line).substr(0, space);
      right = std::string_view(line).substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get_ref<const std::string&>();
      right = entry[1].get_ref<const std::string&>();
    } else {
      return merges_ctx.Index(rank).Invalid("must be a string or a pair of strings");
    }
    merged.assign(left).append(right);
    const auto left_id = bpe.Find(left);
    const auto right_id = bpe.Find(right);
    const auto new_id = bpe.Find(merged);
    if (!left_id || !right_id || !new_id) {
      return merges_ctx.Index(rank).Invalid("uses a token that is not in the vocabulary (\"" +
                                            std::string(left) + "\" + \"" + std::string(right) +
                                            "\")");
    }
    // A repeated pair keeps its last rank, as HF's HashMap collect does.
    bpe.merges_.insert_or_assign(PairKey(*left_id, *right_id),
                                 Merge{static_cast<int32_t>(rank), *new_id});
  }

  CKV_ASSIGN_OR_RETURN(const auto unk, OptionalString(model, "unk_token", ctx));
  if (unk) {
    bpe.unk_id_ = bpe.Find(*unk);
    if (!bpe.unk_id_) return ctx.Child("unk_token").Invalid("\"" + *unk + "\" is not in vocab");
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    bpe.byte_fallback_ids_[b] = bpe.Find(name).value_or(-1);
    std::string level;
    AppendUtf8(ByteToCodePoint(static_cast<uint8_t>(b)), &level);
    bpe.byte_level_ids_[b] = bpe.Find(level).value_or(-1);
  }
  return bpe;
}

std::optional<int32_t> BpeModel::Find(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::TokenOf(int32_t id) const {
  if (id < 0 || id > max_id() || !id_used_[id]) return nullptr;
  return &id_to_token_[id];
}

const BpeModel::Merge* BpeModel::FindMerge(int32_t left, int32_t right) const {
  const auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::InitialCharSymbols(std::string_view piece, std::vector<int32_t>* ids) const {
  // Mirrors HF BPE::merge_word: a run of unknown characters is one unk with fuse_unk.
  bool pending_unk = false;
  size_t pos = 0;
  while (pos < piece.size()) {
    const size_t len = Utf8SequenceLength(static_cast<unsigned char>(piece[pos]));
    const std::string_view ch = piece.substr(pos, len);
    pos += len;
    if (const auto id = Find(ch)) {
      if (pending_unk) ids->push_back(*unk_id_);
      pending_unk = false;
      ids->push_back(*id);
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes = true;
      for (char c : ch) all_bytes &= byte_fallback_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all_bytes) {
        // As in HF, a pending unk is not flushed before byte tokens.
        for (char c : ch) ids->push_back(byte_fallback_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (!unk_id_) continue;  // HF drops unknown characters when there is no unk token.
    if (pending_unk && !fuse_unk_) ids->push_back(*unk_id_);
    pending_unk = true;
  }
  if (pending_unk) ids->push_back(*unk_id_);
}

void BpeModel::Tokenize(std::string_view piece, bool byte_level, BpeWorkspace* ws,
                        std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  std::vector<int32_t>& ids = ws->ids;
  ids.clear();
  if (byte_level) {
    bool complete = true;
    for (char c : piece) complete &= byte_level_ids_[static_cast<uint8_t>(c)] >= 0;
    if (ignore_merges_ || !complete) {
      ws->scratch = BytesToByteLevel(piece);
      if (ignore_merges_) {
        if (const auto id = Find(ws->scratch)) {
          out->push_back(*id);
          return;
        }
      }
    }
    if (complete) {
      for (char c : piece) ids.push_back(byte_level_ids_[static_cast<uint8_t>(c)]);
    } else {
      InitialCharSymbols(ws->scratch, &ids);
    }
  } else {
    if (ignore_merges_) {
      if (const auto id = Find(piece)) {
        out->push_back(*id);
        return;
      }
    }
    InitialCharSymbols(piece, &ids);
  }
  MergeAll(ws);
  for (const int32_t id : ids) {
    if (id >= 0) out->push_back(id);
  }
}

void BpeModel::MergeAll(BpeWorkspace* ws) const {
  std::vector<int32_t>& ids = ws->ids;
  const auto n = static_cast<int32_t>(ids.size());
  if (n < 2) return;
  ws->prev.resize(n);
  ws->next.resize(n);
  auto& heap = ws->heap;
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    ws->prev[i] = i - 1;
    ws->next[i] = i + 1;
    if (i + 1 < n) {
      if (const Merge* m = FindMerge(ids[i], ids[i + 1])) {
        heap.push_back({m->rank, i, ids[i], ids[i + 1], m->new_id});
      }
    }
  }
  std::make_heap(heap.begin(), heap.end(), HeapAfter);
  auto push = [&](int32_t left_pos, int32_t right_pos) {
    if (const Merge* m = FindMerge(ids[left_pos], ids[right_pos])) {
      heap.push_back({m->rank, left_pos, ids[left_pos], ids[right_pos], m->new_id});
      std::push_heap(heap.begin(), heap.end(), HeapAfter);
    }
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), HeapAfter);
    const BpeWorkspace::Candidate top = heap.back();
    heap.pop_back();
    // Stale when either symbol has been merged since: ids only ever change by merging,
    // and a merged token differs from both of its parts.
    const int32_t right = ws->next[top.pos];
    if (ids[top.pos] != top.left_id || right >= n || ids[right] != top.right_id) continue;
    ids[top.pos] = top.new_id;
    ids[right] = -1;
    const int32_t after = ws->next[right];
    ws->next[top.pos] = after;
    if (after < n) ws->prev[after] = top.pos;
    if (ws->prev[top.pos] >= 0) push(ws->prev[top.pos], top.pos);
    if (after < n) push(top.pos, after);
  }
}

}  // namespace ckv::tokenizer
