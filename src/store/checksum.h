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
std::string Hex64(uint64_t v);
std::optional<uint64_t> ParseHex64(std::string_view s);  // exactly 16 hex digits

}  // namespace ckv::store_internal
