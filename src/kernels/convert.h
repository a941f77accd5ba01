// Row conversions between float32 and the 16-bit storage types (vectorized where possible).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace ckv {

void Bf16ToF32Row(const uint16_t* src, float* dst, size_t n);
void F32ToBf16Row(const float* src, uint16_t* dst, size_t n);
void F16ToF32Row(const uint16_t* src, float* dst, size_t n);
// Converts n elements of `src` (stored as `type`) to float32.
void ToF32Row(const void* src, DType type, float* dst, size_t n);

}  // namespace ckv
