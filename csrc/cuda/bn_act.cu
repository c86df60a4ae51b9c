// CUDA kernels of the fused BatchNorm + LeakyReLU operators (docs/operators.md).
//
// Every pass is one sweep over the big tensors with vector loads and stores (up to 16
// bytes) where alignment allows. A tensor in its kernel layout is seen as
// [outer][cols][inner] vectors of VEC elements:
//   NCHW: [N][C][H*W/VEC], a column is one channel, one block column per channel;
//   NHWC: [N*H*W][C/VEC][1], a column is VEC adjacent channels, one thread per column.
// A column's outer*inner vectors are shared out over (blockIdx.y, threadIdx.y), so a
// thread's channels never change and their constants live in registers. Reductions
// write one partial per (blockIdx.y, channel) and a small kernel combines them in a
// fixed order: no atomics, results are deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <tuple>
#include <type_traits>

#include "common.h"

namespace fastgan {
namespace {

constexpr int kThreads = 256;      // threads per block (at most)
constexpr int kUnroll = 4;         // vectors per thread whose loads are in flight together
constexpr int64_t kMaxGridY = 65535;
constexpr int kCombineWarps = 8;   // channels per block of a combine kernel
constexpr int kReduceSmemBytes = 32 * 1024;

// float for float/half/bfloat16 elements, double for double.
template <typename T>
using acc_type = std::conditional_t<std::is_same<T, double>::value, double, float>;

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

struct Geom {
  int64_t outer, cols, inner;
};

// The vectors of one column that this thread visits: u = threadIdx.y + blockIdx.y * blockDim.y,
// then every gridDim.y * blockDim.y. u = o * inner + i is tracked with carries, so the loop
// needs no division.
class ColumnWalk {
 public:
  __device__ ColumnWalk(const Geom& g, int64_t col)
      : outer_(g.outer), inner_(g.inner), base_(col * g.inner), outer_stride_(g.cols * g.inner) {
    const int64_t u = int64_t(blockIdx.y) * blockDim.y + threadIdx.y;
    const int64_t step = int64_t(gridDim.y) * blockDim.y;
    o_ = u / inner_;
    i_ = u - o_ * inner_;
    step_o_ = step / inner_;
    step_i_ = step - step_o_ * inner_;
  }

  __device__ bool valid() const { return o_ < outer_; }
  __device__ int64_t offset() const { return base_ + o_ * outer_stride_ + i_; }

  // Calls f(off, ok) with kUnroll positions at a time (ok[k] false past the end).
  template <typename F>
  __device__ void run(F&& f) {
    while (valid()) {
      int64_t off[kUnroll];
      bool ok[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        ok[k] = valid();
        off[k] = offset();
        advance();
      }
      f(off, ok);
    }
  }

 private:
  __device__ void advance() {
    o_ += step_o_;
    i_ += step_i_;
    if (i_ >= inner_) {  // i_ < 2 * inner_ here, one carry is enough
      i_ -= inner_;
      ++o_;
    }
  }

  int64_t outer_, inner_, base_, outer_stride_;
  int64_t o_, i_, step_o_, step_i_;
};

__device__ __forceinline__ int64_t thread_column() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}

// The grad and saved vectors at one ColumnWalk batch of positions, every load issued before
// any is used, so the kUnroll pairs are in flight together (both backward passes read them).
template <typename V>
__device__ __forceinline__ void load_pairs(const V* __restrict__ gv, const V* __restrict__ sv,
                                           const int64_t* off, const bool* ok, V (&gk)[kUnroll],
                                           V (&sk)[kUnroll]) {
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    if (ok[k]) {
      gk[k] = gv[off[k]];
      sk[k] = sv[off[k]];
    }
  }
}

// Channel of lane j (of P lanes) of column col: NCHW columns are channels, NHWC columns
// hold P = VEC adjacent channels.
template <bool ROWS, int P>
__device__ __forceinline__ int64_t lane_channel(int64_t col, int j) {
  return ROWS ? col * P + j : col;
}

// ---- reduction states (merged in double, whatever the element type) --------------------

// Count, mean and sum of squared deviations of a set of values (Chan et al. merge).
struct Welford {
  double n, mean, m2;

  __device__ void merge(const Welford& o) {
    if (o.n == 0) return;
    const double n_ab = n + o.n;
    const double r = o.n / n_ab;
    const double delta = o.mean - mean;
    mean += delta * r;
    m2 += o.m2 + delta * delta * n * r;
    n = n_ab;
  }
  __device__ Welford shfl_down(int offset) const {
    return {__shfl_down_sync(0xffffffffu, n, offset), __shfl_down_sync(0xffffffffu, mean, offset),
            __shfl_down_sync(0xffffffffu, m2, offset)};
  }
};

// sum(dz) and sum(dz * xhat).
struct DzSums {
  double dz, dz_xhat;

  __device__ void merge(const DzSums& o) {
    dz += o.dz;
    dz_xhat += o.dz_xhat;
  }
  __device__ DzSums shfl_down(int offset) const {
    return {__shfl_down_sync(0xffffffffu, dz, offset),
            __shfl_down_sync(0xffffffffu, dz_xhat, offset)};
  }
};

// Merges the P states of every thread over threadIdx.y (a fixed tree); the result is in
// the threads with threadIdx.y == 0. sm holds blockDim.x * blockDim.y * P states.
template <typename S, int P>
__device__ void merge_over_y(S (&st)[P], S* sm) {
  const int bx = blockDim.x, by = blockDim.y;
  S* mine = sm + (threadIdx.y * bx + threadIdx.x) * P;
#pragma unroll
  for (int j = 0; j < P; ++j) mine[j] = st[j];
  __syncthreads();
  int half = 1;
  while (half < by) half <<= 1;
  for (half >>= 1; half > 0; half >>= 1) {
    if (int(threadIdx.y) < half && int(threadIdx.y) + half < by) {
      const S* other = mine + half * bx * P;
#pragma unroll
      for (int j = 0; j < P; ++j) mine[j].merge(other[j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < P; ++j) st[j] = mine[j];
}

// Merges the block's states over threadIdx.y and writes them to the partial[c][split]
// workspace that the combine kernels read, one state per channel and block row.
template <bool ROWS, typename S, int P>
__device__ void store_partials(S (&st)[P], unsigned char* smem, bool active, int64_t col,
                               S* __restrict__ partial) {
  merge_over_y(st, reinterpret_cast<S*>(smem));
  if (active && threadIdx.y == 0) {
#pragma unroll
    for (int j = 0; j < P; ++j) {
      partial[lane_channel<ROWS, P>(col, j) * gridDim.y + blockIdx.y] = st[j];
    }
  }
}

// One warp per channel merges partial[c][0..splits) in a fixed order.
template <typename S>
__device__ bool combine_channel(const S* __restrict__ partial, int64_t splits, int64_t C,
                                int64_t& c, S& total) {
  c = int64_t(blockIdx.x) * kCombineWarps + threadIdx.x / 32;
  if (c >= C) return false;  // warp-uniform
  const int lane = threadIdx.x % 32;
  total = S{};
  for (int64_t s = lane; s < splits; s += 32) total.merge(partial[c * splits + s]);
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) total.merge(total.shfl_down(offset));
  return lane == 0;
}

// ---- statistics ---------------------------------------------------------------------

// Each thread folds its loads, one batch of kUnroll vectors at a time, into a running
// (count, mean, M2) per lane: the batch's own mean first, then its squared deviations
// from it, then a Chan merge. No value is ever squared far from its neighbours' mean,
// so var stays exact for |mean| >> std and for outliers (a zero-padded border pixel).
template <typename scalar_t, int VEC, bool ROWS>
__global__ void __launch_bounds__(kThreads)
    stats_partial_kernel(const scalar_t* __restrict__ x, Geom g, Welford* __restrict__ partial) {
  using acc_t = acc_type<scalar_t>;
  using V = Vec<scalar_t, VEC>;
  constexpr int P = ROWS ? VEC : 1;
  extern __shared__ __align__(16) unsigned char smem[];

  const int64_t col = thread_column();
  const bool active = col < g.cols;
  Welford st[P] = {};
  if (active) {
    ColumnWalk walk(g, col);
    if (walk.valid()) {
      const V* xv = reinterpret_cast<const V*>(x);
      acc_t mean[VEC], m2[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        mean[j] = 0;
        m2[j] = 0;
      }
      int64_t count = 0;  // vectors seen
      walk.run([&](const int64_t* off, const bool* ok) {
        V v[kUnroll];
        int b = 0;
#pragma unroll
        for (int k = 0; k < kUnroll; ++k)
          if (ok[k]) {
            v[k] = xv[off[k]];
            ++b;
          }
        if (b == 0) return;
        const acc_t inv_b = acc_t(1) / acc_t(b);
        const acc_t w_new = acc_t(b) / acc_t(count + b);  // the batch's share of the merge
        const acc_t w_cross = acc_t(count) * w_new;          // count * b / (count + b)
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          acc_t sum = 0;
#pragma unroll
          for (int k = 0; k < kUnroll; ++k)
            if (ok[k]) sum += static_cast<acc_t>(v[k].v[j]);
          const acc_t batch_mean = sum * inv_b;
          acc_t q = 0;
#pragma unroll
          for (int k = 0; k < kUnroll; ++k)
            if (ok[k]) {
              const acc_t d = static_cast<acc_t>(v[k].v[j]) - batch_mean;
              q += d * d;
            }
          const acc_t delta = batch_mean - mean[j];
          mean[j] += delta * w_new;
          m2[j] += q + delta * delta * w_cross;
        }
        count += b;
      });
      const double n = double(count);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const Welford lane{n, double(mean[j]), double(m2[j])};
        if constexpr (ROWS) {
          st[j] = lane;
        } else {
          st[0].merge(lane);  // NCHW: the VEC lanes hold one channel
        }
      }
    }
  }
  store_partials<ROWS>(st, smem, active, col, partial);
}

// mean, biased var and (optionally) 1 / sqrt(var + eps) per channel.
template <typename acc_t>
__global__ void stats_combine_kernel(const Welford* __restrict__ partial, int64_t splits, int64_t C,
                                     acc_t* __restrict__ mean, acc_t* __restrict__ var,
                                     acc_t* __restrict__ invstd, double eps) {
  int64_t c;
  Welford t;
  if (!combine_channel(partial, splits, C, c, t)) return;
  const double v = t.m2 / t.n;
  mean[c] = static_cast<acc_t>(t.mean);
  var[c] = static_cast<acc_t>(v);
  if (invstd != nullptr) invstd[c] = static_cast<acc_t>(1.0 / sqrt(v + eps));
}

// act(z) = z if z > 0 else slope * z. With slope 0 (ReLU) a negative z gives 0, -inf
// included (-inf * 0 would be nan), as nn.ReLU does; nan stays nan.
template <typename acc_t>
__device__ __forceinline__ acc_t act(acc_t z, acc_t slope) {
  return z > acc_t(0) ? z : (slope == acc_t(0) && z < acc_t(0) ? acc_t(0) : z * slope);
}

// grad * act'(z) from the mask z > 0; with slope 0 the masked gradient is 0 whatever grad
// is (inf and nan included), as nn.ReLU's backward.
template <typename acc_t>
__device__ __forceinline__ acc_t act_grad(bool positive, acc_t grad, acc_t slope) {
  return positive ? grad : (slope == acc_t(0) ? acc_t(0) : grad * slope);
}

// ---- per-channel constants ----------------------------------------------------------

template <typename acc_t>
struct ChannelArgs {
  const acc_t* mean;
  const acc_t* invstd;
  const acc_t* weight;  // nullptr means 1
  const acc_t* bias;    // nullptr means 0
  acc_t slope;
};

// Recovers dz = grad * act'(z) and xhat of one element from the saved tensor.
template <typename acc_t, bool FROM_OUTPUT>
struct Recover;

// Saved is the input: xhat = (x - mean) * invstd, z = (x - mean) * weight * invstd + bias,
// the same expression as the forward pass so the mask agrees with it.
template <typename acc_t>
struct Recover<acc_t, false> {
  acc_t mean, invstd, scale, bias;

  __device__ void load(const ChannelArgs<acc_t>& a, int64_t c) {
    mean = a.mean[c];
    invstd = a.invstd[c];
    scale = invstd * (a.weight ? a.weight[c] : acc_t(1));
    bias = a.bias ? a.bias[c] : acc_t(0);
  }
  __device__ void operator()(acc_t s, acc_t grad, acc_t slope, acc_t, acc_t& dz,
                             acc_t& xhat) const {
    const acc_t d = s - mean;
    dz = act_grad(d * scale + bias > acc_t(0), grad, slope);
    xhat = d * invstd;
  }
};

// Saved is the output y: z = y, or y / slope where y <= 0; xhat = (z - bias) / weight.
template <typename acc_t>
struct Recover<acc_t, true> {
  acc_t bias, inv_weight;

  __device__ void load(const ChannelArgs<acc_t>& a, int64_t c) {
    bias = a.bias ? a.bias[c] : acc_t(0);
    inv_weight = a.weight ? acc_t(1) / a.weight[c] : acc_t(1);
  }
  __device__ void operator()(acc_t y, acc_t grad, acc_t slope, acc_t inv_slope, acc_t& dz,
                             acc_t& xhat) const {
    const bool positive = y > acc_t(0);
    dz = positive ? grad : grad * slope;
    xhat = ((positive ? y : y * inv_slope) - bias) * inv_weight;
  }
};

// ---- forward: normalize + affine + activation ---------------------------------------

template <typename scalar_t, int VEC, bool ROWS>
__global__ void __launch_bounds__(kThreads)
    apply_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, Geom g,
                 ChannelArgs<acc_type<scalar_t>> a) {
  using acc_t = acc_type<scalar_t>;
  using V = Vec<scalar_t, VEC>;
  constexpr int P = ROWS ? VEC : 1;
  const int64_t col = thread_column();
  if (col >= g.cols) return;
  acc_t mean[P], scale[P], bias[P];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int64_t c = lane_channel<ROWS, P>(col, j);
    mean[j] = a.mean[c];
    scale[j] = a.invstd[c] * (a.weight ? a.weight[c] : acc_t(1));
    bias[j] = a.bias ? a.bias[c] : acc_t(0);
  }
  const acc_t slope = a.slope;
  const V* xv = reinterpret_cast<const V*>(x);
  V* yv = reinterpret_cast<V*>(y);
  ColumnWalk(g, col).run([&](const int64_t* off, const bool* ok) {
    V v[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k)
      if (ok[k]) v[k] = xv[off[k]];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      if (!ok[k]) continue;
      V out;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const int p = ROWS ? j : 0;
        const acc_t z = (static_cast<acc_t>(v[k].v[j]) - mean[p]) * scale[p] + bias[p];
        out.v[j] = static_cast<scalar_t>(act(z, slope));
      }
      yv[off[k]] = out;
    }
  });
}

// ---- backward -----------------------------------------------------------------------

template <typename scalar_t, int VEC, bool ROWS, bool FROM_OUTPUT>
__global__ void __launch_bounds__(kThreads)
    backward_reduce_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ saved,
                           Geom g, ChannelArgs<acc_type<scalar_t>> a,
                           acc_type<scalar_t> inv_slope, DzSums* __restrict__ partial) {
  using acc_t = acc_type<scalar_t>;
  using V = Vec<scalar_t, VEC>;
  constexpr int P = ROWS ? VEC : 1;
  extern __shared__ __align__(16) unsigned char smem[];

  const int64_t col = thread_column();
  const bool active = col < g.cols;
  DzSums st[P] = {};
  if (active) {
    Recover<acc_t, FROM_OUTPUT> rec[P];
#pragma unroll
    for (int j = 0; j < P; ++j) rec[j].load(a, lane_channel<ROWS, P>(col, j));
    const acc_t slope = a.slope;
    acc_t s_dz[VEC] = {}, s_dzx[VEC] = {};
    const V* gv = reinterpret_cast<const V*>(grad);
    const V* sv = reinterpret_cast<const V*>(saved);
    ColumnWalk(g, col).run([&](const int64_t* off, const bool* ok) {
      V gk[kUnroll], sk[kUnroll];
      load_pairs(gv, sv, off, ok, gk, sk);
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        if (!ok[k]) continue;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          acc_t dz, xhat;
          rec[ROWS ? j : 0](static_cast<acc_t>(sk[k].v[j]), static_cast<acc_t>(gk[k].v[j]),
                            slope, inv_slope, dz, xhat);
          s_dz[j] += dz;
          s_dzx[j] += dz * xhat;
        }
      }
    });
#pragma unroll
    for (int j = 0; j < VEC; ++j) st[ROWS ? j : 0].merge(DzSums{s_dz[j], s_dzx[j]});
  }
  store_partials<ROWS>(st, smem, active, col, partial);
}

template <typename acc_t>
__global__ void sums_combine_kernel(const DzSums* __restrict__ partial, int64_t splits, int64_t C,
                                    acc_t* __restrict__ sum_dz, acc_t* __restrict__ sum_dz_xhat) {
  int64_t c;
  DzSums t;
  if (!combine_channel(partial, splits, C, c, t)) return;
  sum_dz[c] = static_cast<acc_t>(t.dz);
  sum_dz_xhat[c] = static_cast<acc_t>(t.dz_xhat);
}

// grad_input = (dz - mean_dz - xhat * mean_dz_xhat) * invstd * weight.
template <typename scalar_t, int VEC, bool ROWS, bool FROM_OUTPUT>
__global__ void __launch_bounds__(kThreads)
    backward_input_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ saved,
                          scalar_t* __restrict__ grad_input, Geom g,
                          ChannelArgs<acc_type<scalar_t>> a, acc_type<scalar_t> inv_slope,
                          const acc_type<scalar_t>* __restrict__ mean_dz,
                          const acc_type<scalar_t>* __restrict__ mean_dz_xhat) {
  using acc_t = acc_type<scalar_t>;
  using V = Vec<scalar_t, VEC>;
  constexpr int P = ROWS ? VEC : 1;
  const int64_t col = thread_column();
  if (col >= g.cols) return;
  Recover<acc_t, FROM_OUTPUT> rec[P];
  acc_t mdz[P], mdzx[P], k_in[P];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int64_t c = lane_channel<ROWS, P>(col, j);
    rec[j].load(a, c);
    mdz[j] = mean_dz[c];
    mdzx[j] = mean_dz_xhat[c];
    k_in[j] = a.invstd[c] * (a.weight ? a.weight[c] : acc_t(1));
  }
  const acc_t slope = a.slope;
  const V* gv = reinterpret_cast<const V*>(grad);
  const V* sv = reinterpret_cast<const V*>(saved);
  V* ov = reinterpret_cast<V*>(grad_input);
  ColumnWalk(g, col).run([&](const int64_t* off, const bool* ok) {
    V gk[kUnroll], sk[kUnroll];
    load_pairs(gv, sv, off, ok, gk, sk);
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      if (!ok[k]) continue;
      V out;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const int p = ROWS ? j : 0;
        acc_t dz, xhat;
        rec[p](static_cast<acc_t>(sk[k].v[j]), static_cast<acc_t>(gk[k].v[j]), slope, inv_slope,
               dz, xhat);
        out.v[j] = static_cast<scalar_t>((dz - mdz[p] - xhat * mdzx[p]) * k_in[p]);
      }
      ov[off[k]] = out;
    }
  });
}

// ---- host side ----------------------------------------------------------------------

// How a tensor in its kernel layout is split into columns and vectors.
struct Layout {
  bool rows;  // walk N*H*W rows of C channels (NHWC, or NCHW with H*W == 1: same memory)
  int64_t N, C, HW;
};

Layout layout_of(const at::Tensor& x) {
  const int64_t HW = x.size(2) * x.size(3);
  return {kernel_layout(x) == at::MemoryFormat::ChannelsLast || HW == 1, x.size(0), x.size(1), HW};
}

// Elements per vector: 16 bytes for NCHW, whose lanes share one channel; at most 4 for
// NHWC, where every lane keeps its own channel constants in registers (occupancy).
template <typename scalar_t, bool ROWS>
constexpr int kWideVec = ROWS && sizeof(scalar_t) < 4 ? 4 : int(16 / sizeof(scalar_t));

// Whole vectors when the contiguous run (a plane or a row) is a whole number of them and
// every big tensor starts on a vector boundary.
bool can_vectorize(const Layout& l, int64_t vec, int64_t bytes,
                   std::initializer_list<const void*> ptrs) {
  if ((l.rows ? l.C : l.HW) % vec != 0) return false;
  return std::all_of(ptrs.begin(), ptrs.end(),
                     [&](const void* p) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; });
}

struct Launch {
  Geom geom;
  dim3 grid, block;
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks of at most max_threads threads (at most max_bx columns wide); up to max_grid_y
// blocks per column group.
Launch plan(const Layout& l, int vec, int max_threads, int max_bx, int64_t max_grid_y) {
  Geom g;
  int64_t bx, by;
  if (l.rows) {
    g = {l.N * l.HW, l.C / vec, 1};
    bx = std::min<int64_t>(g.cols, max_bx);
    by = std::max<int64_t>(1, std::min<int64_t>(max_threads / bx, g.outer));
  } else {
    g = {l.N, l.C, l.HW / vec};
    bx = 1;
    by = std::min<int64_t>(max_threads, ceil_div(g.outer * g.inner, 32) * 32);
  }
  const int64_t gx = ceil_div(g.cols, bx);
  const int64_t gy = std::min({ceil_div(g.outer * g.inner, by * kUnroll), max_grid_y, kMaxGridY});
  return {g, dim3(unsigned(gx), unsigned(std::max<int64_t>(gy, 1))),
          dim3(unsigned(bx), unsigned(by))};
}

// A reduction gets at most one resident wave of blocks (enough to fill the GPU), and
// few enough that the partials (one state per block row and channel) stay under 1/16
// of the bytes read. NHWC blocks are at most a warp wide, so that a wide C makes more
// block columns rather than blocks with few rows each.
template <typename scalar_t, typename Kernel>
Launch plan_reduction(const Layout& l, int vec, int lanes, size_t state_bytes, Kernel kernel,
                      size_t& smem) {
  const int max_threads =
      int(std::min<int64_t>(kThreads, kReduceSmemBytes / (lanes * state_bytes)));
  Launch p = plan(l, vec, max_threads, 32, kMaxGridY);
  const int threads = int(p.block.x * p.block.y);
  smem = size_t(threads) * lanes * state_bytes;
  int per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  const int64_t resident =
      int64_t(std::max(per_sm, 1)) * at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t column_bytes = p.geom.outer * p.geom.inner * vec * int64_t(sizeof(scalar_t));
  const int64_t by_partials = column_bytes / (16 * lanes * int64_t(state_bytes));
  p.grid.y = unsigned(std::max<int64_t>(
      1, std::min({int64_t(p.grid.y), resident / p.grid.x, by_partials})));
  return p;
}

// Calls f(VEC, ROWS) as compile-time constants: the layout's walk, with wide vectors when
// the big tensors (ptrs) allow them, else one element at a time.
template <typename scalar_t, typename F>
void with_walk(const Layout& l, std::initializer_list<const void*> ptrs, F&& f) {
  using One = std::integral_constant<int, 1>;
  if (l.rows) {
    constexpr int V = kWideVec<scalar_t, true>;
    if (can_vectorize(l, V, V * sizeof(scalar_t), ptrs)) {
      f(std::integral_constant<int, V>{}, std::true_type{});
    } else {
      f(One{}, std::true_type{});
    }
  } else {
    constexpr int V = kWideVec<scalar_t, false>;
    if (can_vectorize(l, V, V * sizeof(scalar_t), ptrs)) {
      f(std::integral_constant<int, V>{}, std::false_type{});
    } else {
      f(One{}, std::false_type{});
    }
  }
}

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

at::Tensor contiguous_or_undefined(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

at::Tensor nan_vector(const at::Tensor& x) {
  return at::full({x.size(1)}, std::numeric_limits<double>::quiet_NaN(),
                  x.options().dtype(stat_dtype(x)));
}

// mean, var (and invstd when wanted) of x, which is in its kernel layout and not empty.
template <typename scalar_t>
void launch_stats(const at::Tensor& x, const Layout& l, const at::Tensor& mean,
                  const at::Tensor& var, const at::Tensor& invstd, double eps) {
  using acc_t = acc_type<scalar_t>;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  with_walk<scalar_t>(l, {xp}, [&](auto vec_c, auto rows_c) {
    constexpr int VEC = decltype(vec_c)::value;
    constexpr bool ROWS = decltype(rows_c)::value;
    constexpr int P = ROWS ? VEC : 1;
    auto kernel = stats_partial_kernel<scalar_t, VEC, ROWS>;
    size_t smem = 0;
    const Launch p = plan_reduction<scalar_t>(l, VEC, P, sizeof(Welford), kernel, smem);
    at::Tensor partial = at::empty({l.C, int64_t(p.grid.y), 3}, x.options().dtype(at::kDouble));
    Welford* pp = reinterpret_cast<Welford*>(partial.mutable_data_ptr<double>());
    kernel<<<p.grid, p.block, smem, stream>>>(xp, p.geom, pp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    acc_t* invstd_p = invstd.defined() ? invstd.mutable_data_ptr<acc_t>() : nullptr;
    stats_combine_kernel<acc_t><<<unsigned(ceil_div(l.C, kCombineWarps)), kCombineWarps * 32, 0,
                                  stream>>>(pp, p.grid.y, l.C, mean.mutable_data_ptr<acc_t>(),
                                            var.mutable_data_ptr<acc_t>(), invstd_p, eps);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

template <typename scalar_t>
void launch_apply(const at::Tensor& x, const Layout& l, const at::Tensor& out,
                  const ChannelArgs<acc_type<scalar_t>>& a) {
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = out.mutable_data_ptr<scalar_t>();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  with_walk<scalar_t>(l, {xp, yp}, [&](auto vec_c, auto rows_c) {
    constexpr int VEC = decltype(vec_c)::value;
    constexpr bool ROWS = decltype(rows_c)::value;
    const Launch p = plan(l, VEC, kThreads, kThreads, kMaxGridY);
    apply_kernel<scalar_t, VEC, ROWS><<<p.grid, p.block, 0, stream>>>(xp, yp, p.geom, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// The per-channel arguments of a pass; the tensors behind the pointers must outlive it.
struct ChannelTensors {
  at::Tensor mean, invstd, weight, bias;

  template <typename acc_t>
  ChannelArgs<acc_t> args(double negative_slope) const {
    return {mean.const_data_ptr<acc_t>(), invstd.const_data_ptr<acc_t>(),
            ptr_or_null<acc_t>(weight), ptr_or_null<acc_t>(bias),
            static_cast<acc_t>(negative_slope)};
  }
};

// ---- operators ----------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> bn_stats_cuda(const at::Tensor& input) {
  check_bn_input(input, "input");
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous(kernel_layout(input));
  const Layout l = layout_of(x);
  if (x.numel() == 0) return {nan_vector(x), nan_vector(x)};
  at::Tensor mean = at::empty({l.C}, x.options().dtype(stat_dtype(x)));
  at::Tensor var = at::empty_like(mean);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastgan::bn_stats",
                                  [&] { launch_stats<scalar_t>(x, l, mean, var, {}, 0.0); });
  return {mean, var};
}

at::Tensor bn_act_apply_cuda(const at::Tensor& input, const at::Tensor& mean,
                             const at::Tensor& invstd, const c10::optional<at::Tensor>& weight,
                             const c10::optional<at::Tensor>& bias, double negative_slope,
                             bool /*save_output*/) {
  check_bn_input(input, "input");
  check_channel_vector(mean, input, "mean");
  check_channel_vector(invstd, input, "invstd");
  check_optional_channel_vector(weight, input, "weight");
  check_optional_channel_vector(bias, input, "bias");
  const c10::cuda::CUDAGuard guard(input.device());
  const at::MemoryFormat fmt = kernel_layout(input);
  const at::Tensor x = input.contiguous(fmt);
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(fmt));
  if (x.numel() == 0) return out;
  const Layout l = layout_of(x);
  const ChannelTensors ch{mean.contiguous(), invstd.contiguous(), contiguous_or_undefined(weight),
                          contiguous_or_undefined(bias)};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "fastgan::bn_act_apply", [&] {
        launch_apply<scalar_t>(x, l, out, ch.args<acc_type<scalar_t>>(negative_slope));
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> bn_act_train_cuda(
    const at::Tensor& input, const c10::optional<at::Tensor>& weight,
    const c10::optional<at::Tensor>& bias, double eps, double negative_slope,
    bool /*save_output*/) {
  check_bn_input(input, "input");
  check_optional_channel_vector(weight, input, "weight");
  check_optional_channel_vector(bias, input, "bias");
  const c10::cuda::CUDAGuard guard(input.device());
  const at::MemoryFormat fmt = kernel_layout(input);
  const at::Tensor x = input.contiguous(fmt);
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(fmt));
  if (x.numel() == 0) return {out, nan_vector(x), nan_vector(x), nan_vector(x)};
  const Layout l = layout_of(x);
  at::Tensor mean = at::empty({l.C}, x.options().dtype(stat_dtype(x)));
  at::Tensor var = at::empty_like(mean);
  const ChannelTensors ch{mean, at::empty_like(mean), contiguous_or_undefined(weight),
                          contiguous_or_undefined(bias)};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "fastgan::bn_act_train", [&] {
        launch_stats<scalar_t>(x, l, mean, var, ch.invstd, eps);
        launch_apply<scalar_t>(x, l, out, ch.args<acc_type<scalar_t>>(negative_slope));
      });
  return {out, mean, var, ch.invstd};
}

std::tuple<at::Tensor, at::Tensor> bn_act_backward_reduce_cuda(
    const at::Tensor& grad_out, const at::Tensor& saved, const at::Tensor& mean,
    const at::Tensor& invstd, const c10::optional<at::Tensor>& weight,
    const c10::optional<at::Tensor>& bias, double negative_slope, bool saved_is_output) {
  check_backward_args(grad_out, saved, mean, invstd, weight, bias, negative_slope,
                      saved_is_output);
  const c10::cuda::CUDAGuard guard(saved.device());
  const at::MemoryFormat fmt = kernel_layout(saved);
  const at::Tensor s = saved.contiguous(fmt);
  const at::Tensor g = grad_out.contiguous(fmt);
  const Layout l = layout_of(s);
  if (s.numel() == 0) {  // sums over nothing
    at::Tensor zero = at::zeros({l.C}, s.options().dtype(stat_dtype(s)));
    return {zero, zero.clone()};
  }
  at::Tensor sum_dz = at::empty({l.C}, s.options().dtype(stat_dtype(s)));
  at::Tensor sum_dz_xhat = at::empty_like(sum_dz);
  const ChannelTensors ch{mean.contiguous(), invstd.contiguous(), contiguous_or_undefined(weight),
                          contiguous_or_undefined(bias)};
  const double inv_slope = saved_is_output ? 1.0 / negative_slope : 0.0;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, s.scalar_type(), "fastgan::bn_act_backward_reduce", [&] {
        using acc_t = acc_type<scalar_t>;
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const scalar_t* sp = s.const_data_ptr<scalar_t>();
        const ChannelArgs<acc_t> a = ch.args<acc_t>(negative_slope);
        with_walk<scalar_t>(l, {gp, sp}, [&](auto vec_c, auto rows_c) {
          constexpr int VEC = decltype(vec_c)::value;
          constexpr bool ROWS = decltype(rows_c)::value;
          constexpr int P = ROWS ? VEC : 1;
          auto run = [&](auto kernel) {
            size_t smem = 0;
            const Launch p = plan_reduction<scalar_t>(l, VEC, P, sizeof(DzSums), kernel, smem);
            at::Tensor partial =
                at::empty({l.C, int64_t(p.grid.y), 2}, s.options().dtype(at::kDouble));
            DzSums* pp = reinterpret_cast<DzSums*>(partial.mutable_data_ptr<double>());
            kernel<<<p.grid, p.block, smem, stream>>>(gp, sp, p.geom, a, acc_t(inv_slope), pp);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
            sums_combine_kernel<acc_t><<<unsigned(ceil_div(l.C, kCombineWarps)), kCombineWarps * 32,
                                         0, stream>>>(pp, p.grid.y, l.C,
                                                      sum_dz.mutable_data_ptr<acc_t>(),
                                                      sum_dz_xhat.mutable_data_ptr<acc_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          };
          if (saved_is_output) {
            run(backward_reduce_kernel<scalar_t, VEC, ROWS, true>);
          } else {
            run(backward_reduce_kernel<scalar_t, VEC, ROWS, false>);
          }
        });
      });
  return {sum_dz, sum_dz_xhat};
}

at::Tensor bn_act_backward_input_cuda(const at::Tensor& grad_out, const at::Tensor& saved,
                                      const at::Tensor& mean, const at::Tensor& invstd,
                                      const c10::optional<at::Tensor>& weight,
                                      const c10::optional<at::Tensor>& bias,
                                      const at::Tensor& mean_dz, const at::Tensor& mean_dz_xhat,
                                      double negative_slope, bool saved_is_output) {
  check_backward_input_args(grad_out, saved, mean, invstd, weight, bias, mean_dz, mean_dz_xhat,
                            negative_slope, saved_is_output);
  const c10::cuda::CUDAGuard guard(saved.device());
  const at::MemoryFormat fmt = kernel_layout(saved);
  const at::Tensor s = saved.contiguous(fmt);
  const at::Tensor g = grad_out.contiguous(fmt);
  at::Tensor out = at::empty(s.sizes(), s.options().memory_format(fmt));
  if (s.numel() == 0) return out;
  const Layout l = layout_of(s);
  const ChannelTensors ch{mean.contiguous(), invstd.contiguous(), contiguous_or_undefined(weight),
                          contiguous_or_undefined(bias)};
  const at::Tensor mdz = mean_dz.contiguous();
  const at::Tensor mdzx = mean_dz_xhat.contiguous();
  const double inv_slope = saved_is_output ? 1.0 / negative_slope : 0.0;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, s.scalar_type(), "fastgan::bn_act_backward_input", [&] {
        using acc_t = acc_type<scalar_t>;
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const scalar_t* sp = s.const_data_ptr<scalar_t>();
        scalar_t* op = out.mutable_data_ptr<scalar_t>();
        const ChannelArgs<acc_t> a = ch.args<acc_t>(negative_slope);
        const acc_t* mdzp = mdz.const_data_ptr<acc_t>();
        const acc_t* mdzxp = mdzx.const_data_ptr<acc_t>();
        with_walk<scalar_t>(l, {gp, sp, op}, [&](auto vec_c, auto rows_c) {
          constexpr int VEC = decltype(vec_c)::value;
          constexpr bool ROWS = decltype(rows_c)::value;
          const Launch p = plan(l, VEC, kThreads, kThreads, kMaxGridY);
          auto run = [&](auto kernel) {
            kernel<<<p.grid, p.block, 0, stream>>>(gp, sp, op, p.geom, a, acc_t(inv_slope), mdzp,
                                                   mdzxp);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          };
          if (saved_is_output) {
            run(backward_input_kernel<scalar_t, VEC, ROWS, true>);
          } else {
            run(backward_input_kernel<scalar_t, VEC, ROWS, false>);
          }
        });
      });
  return out;
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("bn_stats", &fastgan::bn_stats_cuda);
  m.impl("bn_act_apply", &fastgan::bn_act_apply_cuda);
  m.impl("bn_act_train", &fastgan::bn_act_train_cuda);
  m.impl("bn_act_backward_reduce", &fastgan::bn_act_backward_reduce_cuda);
  m.impl("bn_act_backward_input", &fastgan::bn_act_backward_input_cuda);
}
