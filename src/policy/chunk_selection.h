// Which prefix chunks a request attends to: top chunks by importance within a budget,
// plus chunks that are always kept.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ckv {

struct SelectionBudget {
  double ratio = 0.10;  // fraction r of the prefix's m chunks: keep ceil(r * m)
  // >= 0: instead of ceil(r m) chunks, the fewest top chunks that leave at most this share of
  // the queries' total attention mass (`total_mass` of SelectChunks) outside the selection.
  double max_uncovered_mass = -1;
  bool force_first = true;  // the first chunk (attention sink)
  bool force_last = true;   // the chunk(s) holding the prefix's last tokens
};

// Chunks that are kept whatever their score: the first one, and the last one; when the
// last chunk holds fewer than half a chunk of tokens, the one before it too (so the most
// recent tokens are always fully present).
std::vector<int64_t> ForcedChunks(int64_t n_chunks, int64_t last_chunk_tokens, int chunk_tokens,
                                  const SelectionBudget& budget);

// The ceil(ratio * m) highest-scoring chunks (ties: lower index first) plus the forced ones
// on top of the budget; sorted ascending, no duplicates. ratio >= 1 selects everything.
// With budget.max_uncovered_mass >= 0 the count is instead the fewest top chunks (after the
// forced ones) whose unselected scores sum to at most max_uncovered_mass * total_mass: scores
// are attention mass, total_mass what all keys (prefix and suffix) received, so a layer whose
// queries look mostly at the suffix or at a few chunks takes few, a layer that reads far and
// wide takes many (the budget follows the score distribution).
std::vector<int64_t> SelectChunks(std::span<const float> scores, int64_t last_chunk_tokens,
                                  int chunk_tokens, const SelectionBudget& budget,
                                  double total_mass = 0);

// Sums per-token scores into per-chunk scores (chunk j = tokens [j*c, (j+1)*c)).
std::vector<float> ChunkSums(std::span<const float> token_scores, int chunk_tokens);

}  // namespace ckv
