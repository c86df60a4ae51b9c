// CUDA kernels of the GAN losses (docs/operators.md). One launch computes the loss
// terms and the gradients of every logit map involved (the discriminator's real and
// fake maps share it: the first blocks take one map, the rest the other); each block
// writes its partial sum, and a one-block kernel adds them up in a fixed order, so the
// loss is deterministic without atomics.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>

#include "common.h"

namespace fastgan {
namespace {

constexpr int kThreads = 256;
constexpr int kVectorsPerThread = 4;  // work per thread before another block pays off
constexpr int64_t kMaxBlocksPerMap = 1024;

template <typename T>
using acc_type = std::conditional_t<std::is_same<T, double>::value, double, float>;

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// The per-element term l(x) whose mean is taken, and its derivative dl/dx.
enum class Term : int {
  BCE,        // max(x, 0) - x t + log1p(exp(-|x|))
  Square,     // (x - t)^2
  HingeReal,  // relu(1 - x)
  HingeFake,  // relu(1 + x)
  Linear,     // t x (t = +-1)
};

template <typename scalar_t>
struct MapArgs {
  const scalar_t* x;
  scalar_t* grad;
  int64_t n;
  int64_t blocks;
  bool vectorized;
  Term term;
  acc_type<scalar_t> t;      // target, or the sign of a linear term
  acc_type<scalar_t> inv_n;  // gradients are of the mean
};

__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log1p_(float v) { return log1pf(v); }
__device__ __forceinline__ double log1p_(double v) { return log1p(v); }

// Returns l(x) and sets g = dl/dx / n. Stable for any x: exp only of -|x|.
template <typename acc_t>
__device__ __forceinline__ acc_t term_and_grad(Term term, acc_t x, acc_t t, acc_t inv_n, acc_t& g) {
  const acc_t zero(0), one(1);
  switch (term) {
    case Term::BCE: {
      const acc_t e = exp_(-fabs(x));
      const acc_t sigmoid = (x >= zero ? one : e) / (one + e);
      g = (sigmoid - t) * inv_n;
      return (x > zero ? x : zero) - x * t + log1p_(e);
    }
    case Term::Square: {
      const acc_t d = x - t;
      g = acc_t(2) * d * inv_n;
      return d * d;
    }
    // Comparisons written so that a NaN logit falls into the NaN-propagating branch.
    case Term::HingeReal:
      g = x >= one ? zero : -inv_n;
      return x >= one ? zero : one - x;
    case Term::HingeFake:
      g = x <= -one ? zero : inv_n;
      return x <= -one ? zero : one + x;
    case Term::Linear:
    default:
      g = t * inv_n;
      return t * x;
  }
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block (a fixed tree), valid in thread 0. Safe to call repeatedly.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  __syncthreads();  // an earlier call may still be reading warp_sums
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = 0;
  if (warp == 0) {
    if (lane < int(blockDim.x / 32)) v = warp_sums[lane];
    v = warp_sum(v);
  }
  return v;
}

// Block `block` of the map's m.blocks blocks: writes its share of the gradient and
// returns its share of sum l(x) (per thread).
template <typename scalar_t>
__device__ double map_share(const MapArgs<scalar_t>& m, int64_t block) {
  using acc_t = acc_type<scalar_t>;
  constexpr int VEC = 16 / sizeof(scalar_t);
  using V = Vec<scalar_t, VEC>;
  const int64_t first = block * blockDim.x + threadIdx.x;
  const int64_t stride = m.blocks * blockDim.x;
  double sum = 0;
  int64_t scalar_from = 0;
  if (m.vectorized) {
    const int64_t nv = m.n / VEC;
    const V* xv = reinterpret_cast<const V*>(m.x);
    V* gv = reinterpret_cast<V*>(m.grad);
    for (int64_t i = first; i < nv; i += stride) {
      const V in = xv[i];
      V out;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        acc_t g;
        sum += term_and_grad<acc_t>(m.term, static_cast<acc_t>(in.v[j]), m.t, m.inv_n, g);
        out.v[j] = static_cast<scalar_t>(g);
      }
      gv[i] = out;
    }
    scalar_from = nv * VEC;
  }
  for (int64_t i = scalar_from + first; i < m.n; i += stride) {
    acc_t g;
    sum += term_and_grad<acc_t>(m.term, static_cast<acc_t>(m.x[i]), m.t, m.inv_n, g);
    m.grad[i] = static_cast<scalar_t>(g);
  }
  return sum;
}

// Blocks [0, a.blocks) work on map a, the next b.blocks on map b; partial[block] = sum l.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    loss_kernel(MapArgs<scalar_t> a, MapArgs<scalar_t> b, double* __restrict__ partial) {
  const bool on_b = blockIdx.x >= a.blocks;
  const double sum = on_b ? map_share(b, blockIdx.x - a.blocks) : map_share(a, blockIdx.x);
  const double total = block_sum(sum);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// loss = sum(partials of a) / n_a + sum(partials of b) / n_b.
template <typename acc_t>
__global__ void __launch_bounds__(kThreads)
    loss_finalize_kernel(const double* __restrict__ partial, int64_t blocks_a, int64_t blocks_b,
                         double n_a, double n_b, acc_t* __restrict__ loss) {
  double sa = 0, sb = 0;
  for (int64_t i = threadIdx.x; i < blocks_a; i += blockDim.x) sa += partial[i];
  for (int64_t i = threadIdx.x; i < blocks_b; i += blockDim.x) sb += partial[blocks_a + i];
  sa = block_sum(sa);
  sb = block_sum(sb);
  if (threadIdx.x == 0) *loss = static_cast<acc_t>(sa / n_a + (blocks_b > 0 ? sb / n_b : 0.0));
}

// ---- host side ----------------------------------------------------------------------

struct MapSpec {
  Term term;
  double t;  // target or sign
};

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename scalar_t>
MapArgs<scalar_t> map_args(const at::Tensor& x, const at::Tensor& grad, MapSpec spec) {
  using acc_t = acc_type<scalar_t>;
  constexpr int64_t vec = 16 / sizeof(scalar_t);
  const int64_t n = x.numel();
  const int64_t per_block = int64_t(kThreads) * kVectorsPerThread * vec;
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks =
      std::min<int64_t>({(n + per_block - 1) / per_block, kMaxBlocksPerMap, int64_t(sms) * 4});
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* gp = grad.mutable_data_ptr<scalar_t>();
  return {xp,
          gp,
          n,
          std::max<int64_t>(blocks, 1),
          aligned16(xp) && aligned16(gp),
          spec.term,
          static_cast<acc_t>(spec.t),
          static_cast<acc_t>(1.0 / double(n))};
}

// Loss and gradients over one map (b undefined) or two. Maps are contiguous, non-empty.
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_loss(const at::Tensor& a, MapSpec spec_a,
                                                        const at::Tensor& b, MapSpec spec_b) {
  const c10::cuda::CUDAGuard guard(a.device());
  const at::Tensor xa = a.contiguous();
  const at::Tensor xb = b.defined() ? b.contiguous() : at::Tensor();
  at::Tensor ga = at::empty(xa.sizes(), xa.options());
  at::Tensor gb = b.defined() ? at::empty(xb.sizes(), xb.options()) : at::Tensor();
  at::Tensor loss = at::empty({}, xa.options().dtype(stat_dtype(xa)));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, xa.scalar_type(), "fastgan::gan_loss", [&] {
        using acc_t = acc_type<scalar_t>;
        const MapArgs<scalar_t> ma = map_args<scalar_t>(xa, ga, spec_a);
        MapArgs<scalar_t> mb{};
        if (b.defined()) mb = map_args<scalar_t>(xb, gb, spec_b);
        at::Tensor partial = at::empty({ma.blocks + mb.blocks}, xa.options().dtype(at::kDouble));
        double* pp = partial.mutable_data_ptr<double>();
        loss_kernel<scalar_t><<<unsigned(ma.blocks + mb.blocks), kThreads, 0, stream>>>(ma, mb, pp);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        loss_finalize_kernel<acc_t><<<1, kThreads, 0, stream>>>(
            pp, ma.blocks, mb.blocks, double(ma.n), double(std::max<int64_t>(mb.n, 1)),
            loss.mutable_data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {loss, ga, gb};
}

// ---- operators ----------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor, at::Tensor> gan_d_loss_cuda(const at::Tensor& real_logits,
                                                               const at::Tensor& fake_logits,
                                                               c10::string_view mode,
                                                               double target_real,
                                                               double target_fake) {
  check_logit_pair(real_logits, fake_logits);
  MapSpec real, fake;
  switch (parse_gan_mode(std::string(mode.data(), mode.size()))) {
    case GanMode::Vanilla:
      real = {Term::BCE, target_real};
      fake = {Term::BCE, target_fake};
      break;
    case GanMode::LSGAN:
      real = {Term::Square, target_real};
      fake = {Term::Square, target_fake};
      break;
    case GanMode::Hinge:
      real = {Term::HingeReal, 0.0};
      fake = {Term::HingeFake, 0.0};
      break;
    case GanMode::WGAN:
      real = {Term::Linear, -1.0};
      fake = {Term::Linear, 1.0};
      break;
  }
  return run_loss(real_logits, real, fake_logits, fake);
}

std::tuple<at::Tensor, at::Tensor> gan_g_loss_cuda(const at::Tensor& fake_logits,
                                                   c10::string_view mode, double target_real) {
  check_logits(fake_logits, "fake_logits");
  MapSpec spec{Term::Linear, -1.0};  // hinge and wgan: -mean f
  switch (parse_gan_mode(std::string(mode.data(), mode.size()))) {
    case GanMode::Vanilla:
      spec = {Term::BCE, target_real};
      break;
    case GanMode::LSGAN:
      spec = {Term::Square, target_real};
      break;
    case GanMode::Hinge:
    case GanMode::WGAN:
      break;
  }
  auto result = run_loss(fake_logits, spec, at::Tensor(), spec);
  return {std::get<0>(result), std::get<1>(result)};
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("gan_d_loss", &fastgan::gan_d_loss_cuda);
  m.impl("gan_g_loss", &fastgan::gan_g_loss_cuda);
}
