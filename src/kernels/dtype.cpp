#include "kernels/dtype.h"

namespace ckv {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

std::optional<DType> ParseDType(std::string_view safetensors_name) {
  if (safetensors_name == "F32") return DType::kF32;
  if (safetensors_name == "F16") return DType::kF16;
  if (safetensors_name == "BF16") return DType::kBF16;
  return std::nullopt;
}

namespace {

float BitsToF32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

float F16ToF32(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float, so no bit fiddling is needed.
    const float mag = static_cast<float>(mant) * 5.9604644775390625e-8f;
    uint32_t bits;
    std::memcpy(&bits, &mag, 4);
    return BitsToF32(sign | bits);
  }
  if (exp == 31) return BitsToF32(sign | 0x7f800000u | (mant << 13));  // inf / nan (payload kept)
  return BitsToF32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t F32ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) {
    // NaN: keep the top payload bits and force the quiet bit so it cannot become inf.
    return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
  }
  // 65520 is the midpoint between 65504 (max half, odd mantissa) and 65536: ties go to inf.
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (x < 0x38800000u) {
    // Result is subnormal (or zero): value / 2^-24 rounded to nearest even.
    const uint32_t exp = x >> 23;
    if (exp < 102) return sign;  // below 2^-25: rounds to zero
    const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // in [14, 24]
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;  // may carry into the min normal: fine
    return static_cast<uint16_t>(sign | r);
  }
  // Normal: rebias the exponent and round on the 13 dropped bits; a carry into the exponent
  // is the correct rounded result.
  const uint32_t odd = (x >> 13) & 1u;
  x = x - (112u << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (x >> 13));
}

}  // namespace ckv
