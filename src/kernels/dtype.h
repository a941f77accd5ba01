// Element types of stored tensors and scalar conversions.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace ckv {

enum class DType { kF32, kF16, kBF16 };

inline size_t DTypeSize(DType t) {
  return t == DType::kF32 ? 4 : 2;
}
const char* DTypeName(DType t);  // "F32", "F16", "BF16" as safetensors spells them
std::optional<DType> ParseDType(std::string_view safetensors_name);

inline float Bf16ToF32(uint16_t h) {
  uint32_t bits = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

}  // namespace ckv
