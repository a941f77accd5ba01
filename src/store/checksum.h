// Checksums of the prefix store: XXH3-64 over stored bytes, printed as 16 hex digits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ckv::store_internal {

uint64_t Checksum(const void* data, size_t n);
uint64_t ChecksumWithSeed(const void* data, size_t n, uint64_t seed);
// Checksum(whole) of bytes that live in two buffers (first_n of first, then second_n of
// second), without copying them together: XXH3's streaming form gives the same value.
uint64_t ChecksumOfTwo(const void* first, size_t first_n, const void* second, size_t second_n);
std::string Hex64(uint64_t v);
std::optional<uint64_t> ParseHex64(std::string_view s);  // exactly 16 hex digits

}  // namespace ckv::store_internal
