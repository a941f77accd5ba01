#include "store/checksum.h"

#include <xxhash.h>

#include <memory>
#include <new>

namespace ckv::store_internal {

uint64_t Checksum(const void* data, size_t n) {
  return XXH3_64bits(data, n);
}

uint64_t ChecksumWithSeed(const void* data, size_t n, uint64_t seed) {
  return XXH3_64bits_withSeed(data, n, seed);
}

uint64_t ChecksumOfTwo(const void* first, size_t first_n, const void* second, size_t second_n) {
  struct FreeState {
    void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
  };
  std::unique_ptr<XXH3_state_t, FreeState> state(XXH3_createState());
  if (!state) throw std::bad_alloc();
  XXH3_64bits_reset(state.get());
  XXH3_64bits_update(state.get(), first, first_n);
  XXH3_64bits_update(state.get(), second, second_n);
  return XXH3_64bits_digest(state.get());
}

std::string Hex64(uint64_t v) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = kDigits[v & 15];
  return s;
}

std::optional<uint64_t> ParseHex64(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char ch : s) {
    int d;
    if (ch >= '0' && ch <= '9') {
      d = ch - '0';
    } else if (ch >= 'a' && ch <= 'f') {
      d = ch - 'a' + 10;
    } else {
      return std::nullopt;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

}  // namespace ckv::store_internal
