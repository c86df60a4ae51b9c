// Branch-free select for the CPU kernels' inner loops.
#pragma once

#include <c10/util/bit_cast.h>

#include <cstdint>
#include <type_traits>

namespace fastgan {

// cond ? a : b, as bit operations. Written as a plain select (or std::max), GCC
// turns a product of the result (z * (z > 0 ? 1 : slope)) into a multiply under
// the condition, which under its default -ftrapping-math and without AVX-512
// masking keeps the loop scalar and branchy, ~10x slower.
template <typename T>
inline T pick(bool cond, T a, T b) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const Bits mask = cond ? ~Bits(0) : Bits(0);
  return c10::bit_cast<T>((c10::bit_cast<Bits>(a) & mask) | (c10::bit_cast<Bits>(b) & ~mask));
}

}  // namespace fastgan
