// CPU kernels of the fused BatchNorm + LeakyReLU operators (docs/operators.md).
//
// Each pass reads the big tensors once, in the layout they arrive in: NCHW as
// N*C contiguous planes of H*W values, NHWC as rows of C values (several rows
// at a time when C is small). Inner loops are branch-free over __restrict
// pointers so that -O3 vectorizes them; half types are widened to float per
// element. Reductions sum into float lanes (double lanes for double inputs and
// for the statistics), folded into double every few dozen terms per lane, and
// partial results are combined in a fixed order, so a result depends neither
// on the schedule nor on the thread count.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/bit_cast.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common.h"
#include "cpu/select.h"

namespace fastgan {
namespace {

// Fewest elements worth handing to a thread of their own.
constexpr int64_t kGrain = 32768;
// Independent accumulators in a reduction, enough to fill vector registers and
// hide the latency of the adds: along NCHW planes, and across NHWC rows (a
// tile of the row).
constexpr int64_t kLanes = 32;
constexpr int64_t kTile = 64;
// Elements (NCHW) or rows (NHWC) summed in the lanes before folding into
// double: at most 64 terms per lane keeps float sums accurate.
constexpr int64_t kChunk = 1024;
constexpr int64_t kRowChunk = 64;
// Elements per NHWC reduction block, the unit of its parallel work.
constexpr int64_t kBlock = 65536;
// NHWC rows shorter than this are taken k at a time, as one row of k*C values
// with the channel constants repeated k times, so that short channel loops
// still fill vector registers.
constexpr int64_t kMinRow = 64;

// The NHWC kernel row for C channels: C itself from kMinRow up, else the
// smallest multiple of lcm(C, 16) from kMinRow up, so that a row is whole
// vectors.
int64_t nhwc_row(int64_t C) {
  if (C == 0 || C >= kMinRow) return C;
  const int64_t unit = C * (16 / std::gcd<int64_t>(C, 16));
  return unit * ((kMinRow + unit - 1) / unit);
}

template <typename scalar_t>
using acc_type = at::opmath_type<scalar_t>;

// Element loads and stores in the accumulation type. c10::Half's own
// conversions compile to one-element instructions that keep a loop from
// vectorizing, so both half types convert with branch-free bit arithmetic.
inline float to_acc(float v) { return v; }
inline double to_acc(double v) { return v; }

inline float to_acc(c10::BFloat16 v) { return c10::bit_cast<float>(uint32_t(v.x) << 16); }

inline float to_acc(c10::Half v) {
  const uint32_t magnitude = v.x & 0x7FFFu;
  const uint32_t sign = uint32_t(v.x & 0x8000u) << 16;
  // Exponent and mantissa moved into place; the product rebiases the exponent
  // by 2^112. A half subnormal would be a float subnormal there, which flush-
  // denormal mode (torch.set_flush_denormal) reads as 0, so it is converted from
  // its integer mantissa instead: mantissa * 2^-24, exactly.
  const float normal = c10::bit_cast<float>(magnitude << 13) * 0x1p112f;
  const float subnormal = static_cast<float>(static_cast<int32_t>(magnitude)) * 0x1p-24f;
  const float value = pick(magnitude < 0x400u, subnormal, normal);
  const uint32_t inf_nan = magnitude >= 0x7C00u ? 0x7F800000u : 0u;
  return c10::bit_cast<float>(c10::bit_cast<uint32_t>(value) | inf_nan | sign);
}

template <typename scalar_t>
inline scalar_t from_acc(acc_type<scalar_t> v) {
  return v;
}

template <>
inline c10::BFloat16 from_acc<c10::BFloat16>(float v) {
  const uint32_t u = c10::bit_cast<uint32_t>(v);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;  // to nearest even
  return c10::BFloat16(uint16_t(v != v ? 0x7FC0u : rounded), c10::BFloat16::from_bits());
}

template <>
inline c10::Half from_acc<c10::Half>(float v) {
  const uint32_t u = c10::bit_cast<uint32_t>(v);
  const uint32_t a = u & 0x7FFFFFFFu;
  // Normal halves: rebias the exponent, round the mantissa to nearest even
  // (a carry out of the mantissa correctly gives the next binade, or infinity).
  const uint32_t normal = (a - 0x38000000u + 0xFFFu + ((a >> 13) & 1u)) >> 13;
  // Below 2^-14: adding 0.5 puts the half subnormal unit at the float's last
  // place, so the FPU does the rounding.
  const uint32_t subnormal =
      c10::bit_cast<uint32_t>(c10::bit_cast<float>(a) + 0.5f) - 0x3F000000u;
  const uint32_t huge = a > 0x7F800000u ? 0x7E00u : 0x7C00u;  // NaN, else infinity
  const uint32_t h = a >= 0x47800000u ? huge : (a < 0x38800000u ? subnormal : normal);
  return c10::Half(uint16_t(h | ((u >> 16) & 0x8000u)), c10::Half::from_bits());
}

// A 4-D tensor as the kernels walk it.
struct Dims {
  int64_t N, C, HW;
  bool nhwc;
  int64_t row;  // NHWC: values per kernel row, a multiple of C
  int64_t count() const { return N * HW; }  // elements per channel
  int64_t numel() const { return N * C * HW; }
  // Length of the per-channel constant arrays that the inner loops index.
  int64_t lanes() const { return nhwc ? row : C; }
};

Dims dims_of(const at::Tensor& x, at::MemoryFormat fmt) {
  return {x.size(0), x.size(1), x.size(2) * x.size(3), fmt == at::MemoryFormat::ChannelsLast,
          nhwc_row(x.size(1))};
}

// Per-channel values laid out along the lanes: channel j % C at lane j.
template <typename T>
std::vector<T> lane_values(const Dims& d, const std::vector<T>& v) {
  std::vector<T> out(d.lanes());
  for (int64_t j = 0; j < d.lanes(); ++j) out[j] = v[j % d.C];
  return out;
}

// Sums term(i) = (u, v) over `runs` runs of `len` consecutive offsets, run k
// starting at k * stride, into two totals in double. The lanes are folded into
// double every chunk of at most kChunk elements: a piece of a long run, or
// several short runs, so that short runs cost little more than long ones.
template <typename acc_t, typename Term>
inline void run_sums(int64_t runs, int64_t len, int64_t stride, const Term& term, double& s1,
                     double& s2) {
  s1 = 0.0;
  s2 = 0.0;
  const int64_t runs_per_chunk = std::max<int64_t>(1, kChunk / std::max<int64_t>(len, 1));
  for (int64_t k0 = 0; k0 < runs; k0 += runs_per_chunk) {
    const int64_t k1 = std::min(runs, k0 + runs_per_chunk);
    for (int64_t start = 0; start < len; start += kChunk) {
      const int64_t end = std::min(len, start + kChunk);
      acc_t a1[kLanes] = {};
      acc_t a2[kLanes] = {};
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t base = k * stride;
        int64_t i = start;
        for (; i + kLanes <= end; i += kLanes) {
          for (int64_t j = 0; j < kLanes; ++j) {
            acc_t u, v;
            term(base + i + j, u, v);
            a1[j] += u;
            a2[j] += v;
          }
        }
        for (; i < end; ++i) {
          acc_t u, v;
          term(base + i, u, v);
          a1[(i - start) % kLanes] += u;
          a2[(i - start) % kLanes] += v;
        }
      }
      double t1 = 0.0, t2 = 0.0;
      for (int64_t j = 0; j < kLanes; ++j) {
        t1 += a1[j];
        t2 += a2[j];
      }
      s1 += t1;
      s2 += t2;
    }
  }
}

// Per-channel totals s1[c], s2[c] of term(offset, lane) = (u, v) over the whole
// tensor, in one read; the lane indexes the constants of lane_values. NCHW:
// items of one channel's planes in a few samples (one sample for planes of
// kChunk or more), in parallel and close to memory order, each summed in lanes;
// NHWC: blocks of rows in parallel, lanes across the row. The split depends on
// the shape only, so the result does not depend on the thread count.
template <typename acc_t, typename Term>
void channel_sums(const Dims& d, const Term& term, double* s1, double* s2) {
  std::fill(s1, s1 + d.C, 0.0);
  std::fill(s2, s2 + d.C, 0.0);
  if (d.numel() == 0) return;
  if (!d.nhwc) {
    const int64_t samples = std::max<int64_t>(1, kChunk / d.HW);  // per item
    const int64_t items = (d.N + samples - 1) / samples * d.C;
    std::vector<double> part(2 * items);
    at::parallel_for(0, items, std::max<int64_t>(1, kGrain / (samples * d.HW)),
                     [&](int64_t i0, int64_t i1) {
                       for (int64_t it = i0; it < i1; ++it) {
                         const int64_t c = it % d.C, n0 = it / d.C * samples;
                         const int64_t base = (n0 * d.C + c) * d.HW;
                         run_sums<acc_t>(
                             std::min(samples, d.N - n0), d.HW, d.C * d.HW,
                             [&](int64_t i, acc_t& u, acc_t& v) { term(base + i, c, u, v); },
                             part[2 * it], part[2 * it + 1]);
                       }
                     });
    for (int64_t it = 0; it < items; ++it) {
      s1[it % d.C] += part[2 * it];
      s2[it % d.C] += part[2 * it + 1];
    }
    return;
  }
  // Whole rows of d.row values go in blocks of about kBlock values, whose number
  // does not depend on the thread count (so neither does the result); a last,
  // shorter row (whole channel groups) is summed on its own.
  const int64_t W = d.row, rows = d.numel() / W, tail = d.numel() % W;
  const int64_t block_rows = kRowChunk * std::max<int64_t>(1, kBlock / (kRowChunk * W));
  const int64_t blocks = (rows + block_rows - 1) / block_rows;
  std::vector<double> part(2 * (blocks + 1) * W, 0.0);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double* p1 = part.data() + 2 * b * W;
      double* p2 = p1 + W;
      const int64_t r_end = std::min(rows, (b + 1) * block_rows);
      for (int64_t r = b * block_rows; r < r_end; r += kRowChunk) {
        const int64_t r_stop = std::min(r_end, r + kRowChunk);
        // Lanes are a local tile of the row: the compiler sees that the sums
        // cannot alias the data and keeps them in vector registers, given a
        // fixed tile width.
        for (int64_t c0 = 0; c0 < W; c0 += kTile) {
          acc_t a1[kTile] = {};
          acc_t a2[kTile] = {};
          const auto add_rows = [&](auto width) {
            for (int64_t rr = r; rr < r_stop; ++rr) {
              const int64_t base = rr * W + c0;
              for (int64_t j = 0; j < width; ++j) {
                acc_t u, v;
                term(base + j, c0 + j, u, v);
                a1[j] += u;
                a2[j] += v;
              }
            }
          };
          const int64_t width = std::min(kTile, W - c0);
          if (width == kTile) {
            add_rows(std::integral_constant<int64_t, kTile>());
          } else {
            add_rows(width);
          }
          for (int64_t j = 0; j < width; ++j) {
            p1[c0 + j] += a1[j];
            p2[c0 + j] += a2[j];
          }
        }
      }
    }
  });
  for (int64_t j = 0; j < tail; ++j) {
    acc_t u, v;
    term(rows * W + j, j, u, v);
    part[2 * blocks * W + j] = u;
    part[2 * blocks * W + W + j] = v;
  }
  for (int64_t b = 0; b <= blocks; ++b) {
    for (int64_t j = 0; j < W; ++j) {
      s1[j % d.C] += part[2 * b * W + j];
      s2[j % d.C] += part[2 * b * W + W + j];
    }
  }
}

// Mean and biased variance from sums of d = x - shift and d^2 over n values.
inline void finish_stats(double shift, double s1, double s2, int64_t n, double& mean,
                         double& var) {
  if (n == 0) {
    mean = var = std::numeric_limits<double>::quiet_NaN();
    return;
  }
  const double m1 = s1 / n;
  mean = shift + m1;
  const double v = s2 / n - m1 * m1;
  var = v < 0 ? 0.0 : v;  // rounding below 0 clamped; a nan (nan or inf input) stays nan, as in eager
}

// Statistics sum d = x - shift and d^2 in double lanes: for float and half
// inputs both are exact per element, so the variance stays accurate even when
// the shift (the channel's first value) is far from the mean, e.g. a zero
// padding pixel before a channel of mean 5 and std 0.05. Reading the input
// stays the cost of the pass.
template <typename scalar_t>
void stats_kernel(const Dims& d, const scalar_t* x, double* mean, double* var) {
  std::vector<double> shift(d.C, 0.0);
  if (d.count() > 0) {
    for (int64_t c = 0; c < d.C; ++c) shift[c] = to_acc(x[d.nhwc ? c : c * d.HW]);
  }
  const std::vector<double> lane_shift = lane_values(d, shift);
  const double* sh = lane_shift.data();
  std::vector<double> s2(d.C);
  // `mean` holds the sums of d until finish_stats turns them into means.
  channel_sums<double>(
      d,
      [=](int64_t i, int64_t lane, double& u, double& v) {
        u = static_cast<double>(to_acc(x[i])) - sh[lane];
        v = u * u;
      },
      mean, s2.data());
  for (int64_t c = 0; c < d.C; ++c) {
    finish_stats(shift[c], mean[c], s2[c], d.count(), mean[c], var[c]);
  }
}

// act(z) = z if z > 0 else slope * z. With slope 0 (ReLU) a negative z gives 0, -inf
// included (-inf * 0 would be nan), as nn.ReLU does; nan stays nan.
template <typename acc_t>
inline acc_t act(acc_t z, acc_t slope) {
  return pick(z > 0, z, pick((slope == acc_t(0)) & (z < 0), acc_t(0), z * slope));
}

// grad * act'(z) from the mask z > 0. With slope 0 the masked gradient is 0 whatever
// grad is (inf and nan included), as nn.ReLU's backward.
template <typename acc_t>
inline acc_t act_grad(bool positive, acc_t grad, acc_t slope) {
  return pick(positive, grad, pick(slope == acc_t(0), acc_t(0), grad * slope));
}

// act((x - mean) * scale + bias) over one contiguous run of a single channel.
// The elementwise runs are kept out of line so that their __restrict
// parameters hold wherever they are called from, and the loops vectorize.
template <typename scalar_t, typename acc_t>
C10_NOINLINE void apply_run(const scalar_t* __restrict x, scalar_t* __restrict y, int64_t n,
                            acc_t mean, acc_t scale, acc_t bias, acc_t slope) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t z = (to_acc(x[i]) - mean) * scale + bias;
    y[i] = from_acc<scalar_t>(act(z, slope));
  }
}

// The same over NHWC rows of `width` values, with constants per lane.
template <typename scalar_t, typename acc_t>
C10_NOINLINE void apply_rows(const scalar_t* __restrict x, scalar_t* __restrict y, int64_t rows,
                             int64_t width, const acc_t* __restrict mean,
                             const acc_t* __restrict scale, const acc_t* __restrict bias,
                             acc_t slope) {
  for (int64_t r = 0; r < rows; ++r, x += width, y += width) {
    for (int64_t c = 0; c < width; ++c) {
      const acc_t z = (to_acc(x[c]) - mean[c]) * scale[c] + bias[c];
      y[c] = from_acc<scalar_t>(act(z, slope));
    }
  }
}

// act((x - mean[c]) * scale[c] + bias[c]) over the tensor.
template <typename scalar_t, typename acc_t>
void apply_kernel(const Dims& d, const scalar_t* x, scalar_t* y, const std::vector<acc_t>& mean,
                  const std::vector<acc_t>& scale, const std::vector<acc_t>& bias, acc_t slope) {
  if (!d.nhwc) {
    at::parallel_for(0, d.N * d.C, std::max<int64_t>(1, kGrain / std::max<int64_t>(d.HW, 1)),
                     [&](int64_t p0, int64_t p1) {
                       for (int64_t p = p0; p < p1; ++p) {
                         const int64_t c = p % d.C;
                         apply_run(x + p * d.HW, y + p * d.HW, d.HW, mean[c], scale[c], bias[c],
                                   slope);
                       }
                     });
    return;
  }
  const std::vector<acc_t> m = lane_values(d, mean), sc = lane_values(d, scale),
                           b = lane_values(d, bias);
  const int64_t W = d.row, rows = d.numel() / W, tail = d.numel() % W;
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / W), [&](int64_t r0, int64_t r1) {
    apply_rows(x + r0 * W, y + r0 * W, r1 - r0, W, m.data(), sc.data(), b.data(), slope);
  });
  if (tail > 0) {
    apply_rows(x + rows * W, y + rows * W, 1, tail, m.data(), sc.data(), b.data(), slope);
  }
}

// The backward recovers, per element, the activation's mask and a value u
// proportional to xhat (xhat = u * factor[c]):
//   from the input:  u = x - mean,  z = u * scale + bias, mask from z > 0;
//   from the output: z = y > 0 ? y : y / slope,  u = z - bias, mask from y > 0.
template <typename acc_t>
struct BackwardChannels {
  std::vector<acc_t> mean, scale, bias;  // scale = weight * invstd
  std::vector<double> factor;            // invstd from the input, 1 / weight from the output
};

template <bool kFromOutput, typename acc_t>
inline void recover(acc_t s, acc_t g, acc_t mean, acc_t scale, acc_t bias, acc_t slope,
                    acc_t inv_slope, acc_t& dz, acc_t& u) {
  if constexpr (kFromOutput) {
    const bool pos = s > 0;
    const acc_t z = s * pick(pos, acc_t(1), inv_slope);
    dz = g * pick(pos, acc_t(1), slope);
    u = z - bias;
  } else {
    u = s - mean;
    dz = act_grad(u * scale + bias > 0, g, slope);
  }
}

template <bool kFromOutput, typename scalar_t>
void backward_reduce_kernel(const Dims& d, const scalar_t* g, const scalar_t* s,
                            const BackwardChannels<acc_type<scalar_t>>& ch,
                            acc_type<scalar_t> slope, double* sum_dz, double* sum_dz_xhat) {
  using acc_t = acc_type<scalar_t>;
  const acc_t inv_slope = slope != 0 ? acc_t(1) / slope : acc_t(0);
  const std::vector<acc_t> lane_mean = lane_values(d, ch.mean),
                           lane_scale = lane_values(d, ch.scale),
                           lane_bias = lane_values(d, ch.bias);
  const acc_t* mean = lane_mean.data();
  const acc_t* scale = lane_scale.data();
  const acc_t* bias = lane_bias.data();
  channel_sums<acc_t>(
      d,
      [=](int64_t i, int64_t lane, acc_t& dz, acc_t& dz_u) {
        acc_t u;
        recover<kFromOutput>(to_acc(s[i]), to_acc(g[i]), mean[lane], scale[lane], bias[lane],
                             slope, inv_slope, dz, u);
        dz_u = dz * u;
      },
      sum_dz, sum_dz_xhat);
  for (int64_t c = 0; c < d.C; ++c) sum_dz_xhat[c] *= ch.factor[c];
}

// grad_input = (dz - mean_dz - xhat * mean_dz_xhat) * invstd * weight, written as
// dz * scale + u * ku + k0 with the per-channel constants folded.
template <typename acc_t>
struct InputGradChannels {
  std::vector<acc_t> ku, k0;
};

template <bool kFromOutput, typename scalar_t, typename acc_t>
C10_NOINLINE void input_grad_run(const scalar_t* __restrict g, const scalar_t* __restrict s,
                                 scalar_t* __restrict out, int64_t n, acc_t mean, acc_t scale,
                                 acc_t bias, acc_t ku, acc_t k0, acc_t slope, acc_t inv_slope) {
  for (int64_t i = 0; i < n; ++i) {
    acc_t dz, u;
    recover<kFromOutput>(to_acc(s[i]), to_acc(g[i]), mean, scale, bias, slope, inv_slope, dz, u);
    out[i] = from_acc<scalar_t>(dz * scale + u * ku + k0);
  }
}

template <bool kFromOutput, typename scalar_t, typename acc_t>
C10_NOINLINE void input_grad_rows(const scalar_t* __restrict g, const scalar_t* __restrict s,
                                  scalar_t* __restrict out, int64_t rows, int64_t width,
                                  const acc_t* __restrict mean, const acc_t* __restrict scale,
                                  const acc_t* __restrict bias, const acc_t* __restrict ku,
                                  const acc_t* __restrict k0, acc_t slope, acc_t inv_slope) {
  for (int64_t r = 0; r < rows; ++r, g += width, s += width, out += width) {
    for (int64_t c = 0; c < width; ++c) {
      acc_t dz, u;
      recover<kFromOutput>(to_acc(s[c]), to_acc(g[c]), mean[c], scale[c], bias[c], slope,
                           inv_slope, dz, u);
      out[c] = from_acc<scalar_t>(dz * scale[c] + u * ku[c] + k0[c]);
    }
  }
}

template <bool kFromOutput, typename scalar_t>
void backward_input_kernel(const Dims& d, const scalar_t* g, const scalar_t* s, scalar_t* out,
                           const BackwardChannels<acc_type<scalar_t>>& ch,
                           const InputGradChannels<acc_type<scalar_t>>& ig,
                           acc_type<scalar_t> slope) {
  using acc_t = acc_type<scalar_t>;
  const acc_t inv_slope = slope != 0 ? acc_t(1) / slope : acc_t(0);
  if (!d.nhwc) {
    at::parallel_for(0, d.N * d.C, std::max<int64_t>(1, kGrain / std::max<int64_t>(d.HW, 1)),
                     [&](int64_t p0, int64_t p1) {
                       for (int64_t p = p0; p < p1; ++p) {
                         const int64_t c = p % d.C, off = p * d.HW;
                         input_grad_run<kFromOutput>(g + off, s + off, out + off, d.HW,
                                                     ch.mean[c], ch.scale[c], ch.bias[c],
                                                     ig.ku[c], ig.k0[c], slope, inv_slope);
                       }
                     });
    return;
  }
  const std::vector<acc_t> m = lane_values(d, ch.mean), sc = lane_values(d, ch.scale),
                           b = lane_values(d, ch.bias), ku = lane_values(d, ig.ku),
                           k0 = lane_values(d, ig.k0);
  const int64_t W = d.row, rows = d.numel() / W, tail = d.numel() % W;
  const auto run_rows = [&](int64_t r0, int64_t n_rows, int64_t width) {
    const int64_t off = r0 * W;
    input_grad_rows<kFromOutput>(g + off, s + off, out + off, n_rows, width, m.data(), sc.data(),
                                 b.data(), ku.data(), k0.data(), slope, inv_slope);
  };
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / W),
                   [&](int64_t r0, int64_t r1) { run_rows(r0, r1 - r0, W); });
  if (tail > 0) run_rows(rows, 1, tail);
}

// ---- argument handling shared by the ops ----

// A channel vector's values in the accumulation type; `fill` when absent.
template <typename acc_t>
std::vector<double> channel_values(const c10::optional<at::Tensor>& v, int64_t C, double fill) {
  if (!v.has_value()) return std::vector<double>(C, fill);
  const at::Tensor t = v->contiguous();
  const acc_t* p = t.const_data_ptr<acc_t>();
  return std::vector<double>(p, p + C);
}

// A per-channel result as a (C,) tensor of x's statistics dtype.
at::Tensor channel_tensor(const std::vector<double>& values, const at::Tensor& x) {
  at::Tensor t =
      at::empty({static_cast<int64_t>(values.size())}, x.options().dtype(stat_dtype(x)));
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "fastgan::channel_tensor", [&] {
    std::copy(values.begin(), values.end(), t.mutable_data_ptr<scalar_t>());
  });
  return t;
}

template <typename acc_t>
std::vector<acc_t> narrow(const std::vector<double>& v) {
  return std::vector<acc_t>(v.begin(), v.end());
}

// Per-channel constants of the backward passes, in double before narrowing.
template <typename acc_t>
BackwardChannels<acc_t> backward_channels(const at::Tensor& mean, const at::Tensor& invstd,
                                          const c10::optional<at::Tensor>& weight,
                                          const c10::optional<at::Tensor>& bias, int64_t C,
                                          bool from_output) {
  const std::vector<double> m = channel_values<acc_t>(mean, C, 0.0);
  const std::vector<double> is = channel_values<acc_t>(invstd, C, 0.0);
  const std::vector<double> w = channel_values<acc_t>(weight, C, 1.0);
  BackwardChannels<acc_t> ch;
  ch.mean = narrow<acc_t>(m);
  ch.bias = narrow<acc_t>(channel_values<acc_t>(bias, C, 0.0));
  ch.scale.resize(C);
  ch.factor.resize(C);
  for (int64_t c = 0; c < C; ++c) {
    ch.scale[c] = static_cast<acc_t>(w[c] * is[c]);
    ch.factor[c] = from_output ? 1.0 / w[c] : is[c];
  }
  return ch;
}

// ---- the ops ----

std::tuple<at::Tensor, at::Tensor> bn_stats_cpu(const at::Tensor& input) {
  check_bn_input(input, "input");
  const auto fmt = kernel_layout(input);
  const at::Tensor x = input.contiguous(fmt);
  const Dims d = dims_of(x, fmt);
  std::vector<double> mean(d.C), var(d.C);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastgan::bn_stats",
                                  [&] {
                                    stats_kernel<scalar_t>(d, x.const_data_ptr<scalar_t>(),
                                                           mean.data(), var.data());
                                  });
  return {channel_tensor(mean, x), channel_tensor(var, x)};
}

at::Tensor bn_act_apply_cpu(const at::Tensor& input, const at::Tensor& mean,
                            const at::Tensor& invstd, const c10::optional<at::Tensor>& weight,
                            const c10::optional<at::Tensor>& bias, double negative_slope,
                            bool /*save_output: for autograd only*/) {
  check_bn_input(input, "input");
  check_channel_vector(mean, input, "mean");
  check_channel_vector(invstd, input, "invstd");
  check_optional_channel_vector(weight, input, "weight");
  check_optional_channel_vector(bias, input, "bias");
  const auto fmt = kernel_layout(input);
  const at::Tensor x = input.contiguous(fmt);
  const Dims d = dims_of(x, fmt);
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(fmt));
  if (x.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "fastgan::bn_act_apply", [&] {
        using acc_t = acc_type<scalar_t>;
        const std::vector<double> is = channel_values<acc_t>(invstd, d.C, 0.0);
        const std::vector<double> w = channel_values<acc_t>(weight, d.C, 1.0);
        std::vector<acc_t> scale(d.C);
        for (int64_t c = 0; c < d.C; ++c) scale[c] = static_cast<acc_t>(w[c] * is[c]);
        const std::vector<acc_t> m = narrow<acc_t>(channel_values<acc_t>(mean, d.C, 0.0));
        const std::vector<acc_t> b = narrow<acc_t>(channel_values<acc_t>(bias, d.C, 0.0));
        apply_kernel(d, x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), m, scale,
                     b, static_cast<acc_t>(negative_slope));
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_act_train_cpu(
    const at::Tensor& input, const c10::optional<at::Tensor>& weight,
    const c10::optional<at::Tensor>& bias, double eps, double negative_slope,
    bool /*save_output: for autograd only*/) {
  check_bn_input(input, "input");
  check_optional_channel_vector(weight, input, "weight");
  check_optional_channel_vector(bias, input, "bias");
  const auto fmt = kernel_layout(input);
  const at::Tensor x = input.contiguous(fmt);
  const Dims d = dims_of(x, fmt);
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(fmt));
  std::vector<double> mean(d.C), var(d.C), invstd(d.C);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "fastgan::bn_act_train", [&] {
        using acc_t = acc_type<scalar_t>;
        const std::vector<double> w = channel_values<acc_t>(weight, d.C, 1.0);
        const std::vector<acc_t> b = narrow<acc_t>(channel_values<acc_t>(bias, d.C, 0.0));
        const acc_t slope = static_cast<acc_t>(negative_slope);
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        stats_kernel<scalar_t>(d, xp, mean.data(), var.data());
        for (int64_t c = 0; c < d.C; ++c) invstd[c] = 1.0 / std::sqrt(var[c] + eps);
        if (x.numel() == 0) return;
        std::vector<acc_t> m(d.C), scale(d.C);
        for (int64_t c = 0; c < d.C; ++c) {
          m[c] = static_cast<acc_t>(mean[c]);
          scale[c] = static_cast<acc_t>(w[c] * invstd[c]);
        }
        apply_kernel(d, xp, out.mutable_data_ptr<scalar_t>(), m, scale, b, slope);
      });
  return {out, channel_tensor(mean, x), channel_tensor(var, x), channel_tensor(invstd, x)};
}

std::tuple<at::Tensor, at::Tensor> bn_act_backward_reduce_cpu(
    const at::Tensor& grad_out, const at::Tensor& saved, const at::Tensor& mean,
    const at::Tensor& invstd, const c10::optional<at::Tensor>& weight,
    const c10::optional<at::Tensor>& bias, double negative_slope, bool saved_is_output) {
  check_backward_args(grad_out, saved, mean, invstd, weight, bias, negative_slope,
                      saved_is_output);
  const auto fmt = kernel_layout(saved);
  const at::Tensor s = saved.contiguous(fmt);
  const at::Tensor g = grad_out.contiguous(fmt);
  const Dims d = dims_of(s, fmt);
  std::vector<double> sum_dz(d.C), sum_dz_xhat(d.C);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, s.scalar_type(), "fastgan::bn_act_backward_reduce", [&] {
        using acc_t = acc_type<scalar_t>;
        const auto ch = backward_channels<acc_t>(mean, invstd, weight, bias, d.C, saved_is_output);
        const acc_t slope = static_cast<acc_t>(negative_slope);
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const scalar_t* sp = s.const_data_ptr<scalar_t>();
        if (saved_is_output) {
          backward_reduce_kernel<true, scalar_t>(d, gp, sp, ch, slope, sum_dz.data(),
                                                 sum_dz_xhat.data());
        } else {
          backward_reduce_kernel<false, scalar_t>(d, gp, sp, ch, slope, sum_dz.data(),
                                                  sum_dz_xhat.data());
        }
      });
  return {channel_tensor(sum_dz, s), channel_tensor(sum_dz_xhat, s)};
}

at::Tensor bn_act_backward_input_cpu(const at::Tensor& grad_out, const at::Tensor& saved,
                                     const at::Tensor& mean, const at::Tensor& invstd,
                                     const c10::optional<at::Tensor>& weight,
                                     const c10::optional<at::Tensor>& bias,
                                     const at::Tensor& mean_dz, const at::Tensor& mean_dz_xhat,
                                     double negative_slope, bool saved_is_output) {
  check_backward_input_args(grad_out, saved, mean, invstd, weight, bias, mean_dz, mean_dz_xhat,
                            negative_slope, saved_is_output);
  const auto fmt = kernel_layout(saved);
  const at::Tensor s = saved.contiguous(fmt);
  const at::Tensor g = grad_out.contiguous(fmt);
  const Dims d = dims_of(s, fmt);
  at::Tensor out = at::empty(s.sizes(), s.options().memory_format(fmt));
  if (s.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, s.scalar_type(), "fastgan::bn_act_backward_input", [&] {
        using acc_t = acc_type<scalar_t>;
        const auto ch = backward_channels<acc_t>(mean, invstd, weight, bias, d.C, saved_is_output);
        const std::vector<double> mdz = channel_values<acc_t>(mean_dz, d.C, 0.0);
        const std::vector<double> mdx = channel_values<acc_t>(mean_dz_xhat, d.C, 0.0);
        InputGradChannels<acc_t> ig;
        ig.ku.resize(d.C);
        ig.k0.resize(d.C);
        for (int64_t c = 0; c < d.C; ++c) {
          const double k = ch.scale[c];
          ig.ku[c] = static_cast<acc_t>(-ch.factor[c] * mdx[c] * k);
          ig.k0[c] = static_cast<acc_t>(-mdz[c] * k);
        }
        const acc_t slope = static_cast<acc_t>(negative_slope);
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const scalar_t* sp = s.const_data_ptr<scalar_t>();
        scalar_t* op = out.mutable_data_ptr<scalar_t>();
        if (saved_is_output) {
          backward_input_kernel<true, scalar_t>(d, gp, sp, op, ch, ig, slope);
        } else {
          backward_input_kernel<false, scalar_t>(d, gp, sp, op, ch, ig, slope);
        }
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("bn_stats", &bn_stats_cpu);
  m.impl("bn_act_apply", &bn_act_apply_cpu);
  m.impl("bn_act_train", &bn_act_train_cpu);
  m.impl("bn_act_backward_reduce", &bn_act_backward_reduce_cpu);
  m.impl("bn_act_backward_input", &bn_act_backward_input_cpu);
}

}  // namespace fastgan
