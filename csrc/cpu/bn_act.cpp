// CPU kernels of the fused BatchNorm + LeakyReLU operators (docs/operators.md).
//
// Each pass reads the big tensors once, in the layout they arrive in: NCHW as
// (N*C) contiguous planes of H*W, NHWC as N*H*W rows of C. Inner loops are
// branch-free over __restrict pointers so that -O3 vectorizes them; half types
// are widened to float per element. Reductions sum into float (double for
// double inputs) lanes, folded into double every few thousand elements, and
// partial results are combined in a fixed order, so a result does not depend
// on how the work was scheduled.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "common.h"

namespace fastgan {
namespace {

// Fewest elements worth handing to a thread of their own.
constexpr int64_t kGrain = 32768;
// Independent accumulators in a reduction: enough to fill vector registers
// and hide the latency of the adds.
constexpr int64_t kLanes = 32;
// Elements (NCHW) or rows (NHWC) summed in the lanes before folding into double.
constexpr int64_t kChunk = 4096;
constexpr int64_t kRowChunk = 256;

template <typename scalar_t>
using acc_type = at::opmath_type<scalar_t>;

// A 4-D tensor as the kernels walk it.
struct Dims {
  int64_t N, C, HW;
  bool nhwc;
  int64_t count() const { return N * HW; }  // elements per channel
};

Dims dims_of(const at::Tensor& x, at::MemoryFormat fmt) {
  return {x.size(0), x.size(1), x.size(2) * x.size(3), fmt == at::MemoryFormat::ChannelsLast};
}

// Sums term(i) = (u, v) over i in [0, n), returning the two totals in double.
template <typename acc_t, typename Term>
inline void run_sums(int64_t n, const Term& term, double& s1, double& s2) {
  s1 = 0.0;
  s2 = 0.0;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    acc_t a1[kLanes] = {};
    acc_t a2[kLanes] = {};
    int64_t i = start;
    for (; i + kLanes <= end; i += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) {
        acc_t u, v;
        term(i + j, u, v);
        a1[j] += u;
        a2[j] += v;
      }
    }
    for (; i < end; ++i) {
      acc_t u, v;
      term(i, u, v);
      a1[i - start & (kLanes - 1)] += u;
      a2[i - start & (kLanes - 1)] += v;
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

// Per-channel totals s1[c], s2[c] of term(offset, c) = (u, v) over the whole
// tensor, in one read. NCHW: planes in parallel, each summed in lanes; NHWC: row
// blocks in parallel, lanes across channels.
template <typename acc_t, typename Term>
void channel_sums(const Dims& d, const Term& term, double* s1, double* s2) {
  std::fill(s1, s1 + d.C, 0.0);
  std::fill(s2, s2 + d.C, 0.0);
  if (d.count() == 0 || d.C == 0) return;
  if (!d.nhwc) {
    const int64_t planes = d.N * d.C;
    std::vector<double> part(2 * planes);
    at::parallel_for(0, planes, std::max<int64_t>(1, kGrain / d.HW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t c = p % d.C, base = p * d.HW;
        run_sums<acc_t>(
            d.HW, [&](int64_t i, acc_t& u, acc_t& v) { term(base + i, c, u, v); }, part[2 * p],
            part[2 * p + 1]);
      }
    });
    for (int64_t p = 0; p < planes; ++p) {
      s1[p % d.C] += part[2 * p];
      s2[p % d.C] += part[2 * p + 1];
    }
    return;
  }
  const int64_t C = d.C, rows = d.count();
  const int64_t blocks =
      std::clamp<int64_t>(rows * C / kGrain, 1, std::max(1, at::get_num_threads()));
  std::vector<double> part(2 * blocks * C, 0.0);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<acc_t> lanes(2 * C);
    acc_t* a1 = lanes.data();
    acc_t* a2 = a1 + C;
    for (int64_t b = b0; b < b1; ++b) {
      double* p1 = part.data() + 2 * b * C;
      double* p2 = p1 + C;
      const int64_t r_end = rows * (b + 1) / blocks;
      for (int64_t r = rows * b / blocks; r < r_end; r += kRowChunk) {
        std::fill(lanes.begin(), lanes.end(), acc_t(0));
        for (int64_t rr = r; rr < std::min(r_end, r + kRowChunk); ++rr) {
          const int64_t base = rr * C;
          for (int64_t c = 0; c < C; ++c) {
            acc_t u, v;
            term(base + c, c, u, v);
            a1[c] += u;
            a2[c] += v;
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          p1[c] += a1[c];
          p2[c] += a2[c];
        }
      }
    }
  });
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t c = 0; c < C; ++c) {
      s1[c] += part[2 * b * C + c];
      s2[c] += part[2 * b * C + C + c];
    }
  }
}

// Mean and biased variance from sums of (x - shift) and (x - shift)^2 over n
// values. The shift is a sample of the channel, so the subtraction loses
// little even when the mean is large against the spread.
inline void finish_stats(double shift, double s1, double s2, int64_t n, double& mean, double& var) {
  if (n == 0) {
    mean = var = std::numeric_limits<double>::quiet_NaN();
    return;
  }
  const double m1 = s1 / n;
  mean = shift + m1;
  var = std::max(0.0, s2 / n - m1 * m1);
}

template <typename scalar_t>
void stats_kernel(const Dims& d, const scalar_t* x, double* mean, double* var) {
  using acc_t = acc_type<scalar_t>;
  std::vector<acc_t> shift(d.C, acc_t(0));
  if (d.count() > 0) {
    for (int64_t c = 0; c < d.C; ++c) shift[c] = static_cast<acc_t>(x[d.nhwc ? c : c * d.HW]);
  }
  const acc_t* sh = shift.data();
  std::vector<double> s2(d.C);
  channel_sums<acc_t>(
      d,
      [=](int64_t i, int64_t c, acc_t& u, acc_t& v) {
        u = static_cast<acc_t>(x[i]) - sh[c];
        v = u * u;
      },
      mean, s2.data());
  for (int64_t c = 0; c < d.C; ++c) finish_stats(sh[c], mean[c], s2[c], d.count(), mean[c], var[c]);
}

// act((x - mean) * scale + bias) over one contiguous run of a single channel.
template <typename scalar_t, typename acc_t>
inline void apply_run(const scalar_t* __restrict x, scalar_t* __restrict y, int64_t n, acc_t mean,
                      acc_t scale, acc_t bias, acc_t slope) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t z = (static_cast<acc_t>(x[i]) - mean) * scale + bias;
    y[i] = static_cast<scalar_t>(z > 0 ? z : z * slope);
  }
}

// The same over one NHWC row: channel constants vary along the run.
template <typename scalar_t, typename acc_t>
inline void apply_row(const scalar_t* __restrict x, scalar_t* __restrict y, int64_t C,
                      const acc_t* __restrict mean, const acc_t* __restrict scale,
                      const acc_t* __restrict bias, acc_t slope) {
  for (int64_t c = 0; c < C; ++c) {
    const acc_t z = (static_cast<acc_t>(x[c]) - mean[c]) * scale[c] + bias[c];
    y[c] = static_cast<scalar_t>(z > 0 ? z : z * slope);
  }
}

template <typename scalar_t>
void apply_kernel(const Dims& d, const scalar_t* x, scalar_t* y, const acc_type<scalar_t>* mean,
                  const acc_type<scalar_t>* scale, const acc_type<scalar_t>* bias,
                  acc_type<scalar_t> slope) {
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
  at::parallel_for(0, d.count(), std::max<int64_t>(1, kGrain / std::max<int64_t>(d.C, 1)),
                   [&](int64_t r0, int64_t r1) {
                     for (int64_t r = r0; r < r1; ++r)
                       apply_row(x + r * d.C, y + r * d.C, d.C, mean, scale, bias, slope);
                   });
}

// Training forward in NCHW with one channel per task: the statistics pass leaves
// the channel's planes in cache for the normalize pass that follows at once.
template <typename scalar_t>
void train_nchw_by_channel(const Dims& d, const scalar_t* x, scalar_t* y,
                           const acc_type<scalar_t>* weight, const acc_type<scalar_t>* bias,
                           double eps, acc_type<scalar_t> slope, double* mean, double* var) {
  using acc_t = acc_type<scalar_t>;
  at::parallel_for(0, d.C, std::max<int64_t>(1, kGrain / d.count()), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const acc_t shift = static_cast<acc_t>(x[c * d.HW]);
      double s1 = 0.0, s2 = 0.0;
      for (int64_t n = 0; n < d.N; ++n) {
        const scalar_t* plane = x + (n * d.C + c) * d.HW;
        double t1, t2;
        run_sums<acc_t>(
            d.HW,
            [=](int64_t i, acc_t& u, acc_t& v) {
              u = static_cast<acc_t>(plane[i]) - shift;
              v = u * u;
            },
            t1, t2);
        s1 += t1;
        s2 += t2;
      }
      finish_stats(shift, s1, s2, d.count(), mean[c], var[c]);
      const acc_t m = static_cast<acc_t>(mean[c]);
      const acc_t scale = static_cast<acc_t>(weight[c] / std::sqrt(var[c] + eps));
      for (int64_t n = 0; n < d.N; ++n) {
        const int64_t off = (n * d.C + c) * d.HW;
        apply_run(x + off, y + off, d.HW, m, scale, bias[c], slope);
      }
    }
  });
}

// Whether one task per channel keeps both threads' shares close to equal;
// otherwise the training forward runs as a statistics pass and an apply pass
// that split the work finer.
bool channels_balance(int64_t C) {
  const int64_t threads = at::get_num_threads();
  return C % threads == 0 || C >= 8 * threads;
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
    const acc_t z = s * (pos ? acc_t(1) : inv_slope);
    dz = g * (pos ? acc_t(1) : slope);
    u = z - bias;
  } else {
    u = s - mean;
    dz = g * (u * scale + bias > 0 ? acc_t(1) : slope);
  }
}

template <bool kFromOutput, typename scalar_t>
void backward_reduce_kernel(const Dims& d, const scalar_t* g, const scalar_t* s,
                            const BackwardChannels<acc_type<scalar_t>>& ch,
                            acc_type<scalar_t> slope, double* sum_dz, double* sum_dz_xhat) {
  using acc_t = acc_type<scalar_t>;
  const acc_t inv_slope = slope != 0 ? acc_t(1) / slope : acc_t(0);
  const acc_t* mean = ch.mean.data();
  const acc_t* scale = ch.scale.data();
  const acc_t* bias = ch.bias.data();
  channel_sums<acc_t>(
      d,
      [=](int64_t i, int64_t c, acc_t& dz, acc_t& dz_u) {
        acc_t u;
        recover<kFromOutput>(static_cast<acc_t>(s[i]), static_cast<acc_t>(g[i]), mean[c],
                             scale[c], bias[c], slope, inv_slope, dz, u);
        dz_u = dz * u;
      },
      sum_dz, sum_dz_xhat);
  for (int64_t c = 0; c < d.C; ++c) sum_dz_xhat[c] *= ch.factor[c];
}

// grad_input = (dz - mean_dz - xhat * mean_dz_xhat) * invstd * weight, written as
// dz * k + u * ku + k0 with the per-channel constants folded.
template <typename acc_t>
struct InputGradChannels {
  std::vector<acc_t> k, ku, k0;
};

template <bool kFromOutput, typename scalar_t, typename acc_t>
inline void input_grad_run(const scalar_t* __restrict g, const scalar_t* __restrict s,
                           scalar_t* __restrict out, int64_t n, acc_t mean, acc_t scale,
                           acc_t bias, acc_t k, acc_t ku, acc_t k0, acc_t slope, acc_t inv_slope) {
  for (int64_t i = 0; i < n; ++i) {
    acc_t dz, u;
    recover<kFromOutput>(static_cast<acc_t>(s[i]), static_cast<acc_t>(g[i]), mean, scale, bias,
                         slope, inv_slope, dz, u);
    out[i] = static_cast<scalar_t>(dz * k + u * ku + k0);
  }
}

template <bool kFromOutput, typename scalar_t, typename acc_t>
inline void input_grad_row(const scalar_t* __restrict g, const scalar_t* __restrict s,
                           scalar_t* __restrict out, int64_t C, const acc_t* __restrict mean,
                           const acc_t* __restrict scale, const acc_t* __restrict bias,
                           const acc_t* __restrict k, const acc_t* __restrict ku,
                           const acc_t* __restrict k0, acc_t slope, acc_t inv_slope) {
  for (int64_t c = 0; c < C; ++c) {
    acc_t dz, u;
    recover<kFromOutput>(static_cast<acc_t>(s[c]), static_cast<acc_t>(g[c]), mean[c], scale[c],
                         bias[c], slope, inv_slope, dz, u);
    out[c] = static_cast<scalar_t>(dz * k[c] + u * ku[c] + k0[c]);
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
                                                     ig.k[c], ig.ku[c], ig.k0[c], slope,
                                                     inv_slope);
                       }
                     });
    return;
  }
  at::parallel_for(0, d.count(), std::max<int64_t>(1, kGrain / std::max<int64_t>(d.C, 1)),
                   [&](int64_t r0, int64_t r1) {
                     for (int64_t r = r0; r < r1; ++r) {
                       const int64_t off = r * d.C;
                       input_grad_row<kFromOutput>(g + off, s + off, out + off, d.C,
                                                   ch.mean.data(), ch.scale.data(),
                                                   ch.bias.data(), ig.k.data(), ig.ku.data(),
                                                   ig.k0.data(), slope, inv_slope);
                     }
                   });
}

// ---- argument handling shared by the ops ----

// A channel vector's values in the accumulation type; `fill` when absent.
template <typename acc_t>
std::vector<double> channel_values(const c10::optional<at::Tensor>& v, int64_t C, double fill) {
  if (!v.has_value()) return std::vector<double>(C, fill);
  const at::Tensor t = v->contiguous();
  const acc_t* p = t.data_ptr<acc_t>();
  return std::vector<double>(p, p + C);
}

at::Tensor channel_tensor(const std::vector<double>& values, const at::Tensor& x) {
  return at::tensor(values, x.options().dtype(at::kDouble)).to(stat_dtype(x));
}

template <typename acc_t>
std::vector<acc_t> narrow(const std::vector<double>& v) {
  return std::vector<acc_t>(v.begin(), v.end());
}

void check_backward_args(const at::Tensor& grad_out, const at::Tensor& saved, const at::Tensor& mean,
                         const at::Tensor& invstd, const c10::optional<at::Tensor>& weight,
                         const c10::optional<at::Tensor>& bias, double negative_slope,
                         bool saved_is_output) {
  check_bn_input(grad_out, "grad_out");
  check_bn_input(saved, "saved");
  TORCH_CHECK(grad_out.sizes() == saved.sizes(), "fastgan: grad_out has shape ", grad_out.sizes(),
              " but saved has shape ", saved.sizes());
  TORCH_CHECK(grad_out.scalar_type() == saved.scalar_type(), "fastgan: grad_out is ",
              grad_out.scalar_type(), " but saved is ", saved.scalar_type());
  TORCH_CHECK(grad_out.device() == saved.device(), "fastgan: grad_out is on ", grad_out.device(),
              " but saved is on ", saved.device());
  check_channel_vector(mean, saved, "mean");
  check_channel_vector(invstd, saved, "invstd");
  check_optional_channel_vector(weight, saved, "weight");
  check_optional_channel_vector(bias, saved, "bias");
  TORCH_CHECK(!saved_is_output || negative_slope >= 0,
              "fastgan: recovering from the output needs negative_slope >= 0, got ",
              negative_slope);
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
        apply_kernel<scalar_t>(d, x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                               m.data(), scale.data(), b.data(),
                               static_cast<acc_t>(negative_slope));
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_act_train_cpu(
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
  std::vector<double> mean(d.C), var(d.C);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "fastgan::bn_act_train", [&] {
        using acc_t = acc_type<scalar_t>;
        const std::vector<double> w = channel_values<acc_t>(weight, d.C, 1.0);
        const std::vector<acc_t> b = narrow<acc_t>(channel_values<acc_t>(bias, d.C, 0.0));
        const acc_t slope = static_cast<acc_t>(negative_slope);
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        scalar_t* yp = out.mutable_data_ptr<scalar_t>();
        if (!d.nhwc && d.count() > 0 && channels_balance(d.C)) {
          const std::vector<acc_t> wa = narrow<acc_t>(w);
          train_nchw_by_channel<scalar_t>(d, xp, yp, wa.data(), b.data(), eps, slope, mean.data(),
                                          var.data());
          return;
        }
        stats_kernel<scalar_t>(d, xp, mean.data(), var.data());
        if (x.numel() == 0) return;
        std::vector<acc_t> m(d.C), scale(d.C);
        for (int64_t c = 0; c < d.C; ++c) {
          m[c] = static_cast<acc_t>(mean[c]);
          scale[c] = static_cast<acc_t>(w[c] / std::sqrt(var[c] + eps));
        }
        apply_kernel<scalar_t>(d, xp, yp, m.data(), scale.data(), b.data(), slope);
      });
  return {out, channel_tensor(mean, x), channel_tensor(var, x)};
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
  check_backward_args(grad_out, saved, mean, invstd, weight, bias, negative_slope,
                      saved_is_output);
  check_channel_vector(mean_dz, saved, "mean_dz");
  check_channel_vector(mean_dz_xhat, saved, "mean_dz_xhat");
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
        const std::vector<double> is = channel_values<acc_t>(invstd, d.C, 0.0);
        const std::vector<double> w = channel_values<acc_t>(weight, d.C, 1.0);
        const std::vector<double> mdz = channel_values<acc_t>(mean_dz, d.C, 0.0);
        const std::vector<double> mdx = channel_values<acc_t>(mean_dz_xhat, d.C, 0.0);
        InputGradChannels<acc_t> ig;
        ig.k.resize(d.C);
        ig.ku.resize(d.C);
        ig.k0.resize(d.C);
        for (int64_t c = 0; c < d.C; ++c) {
          const double k = is[c] * w[c];
          ig.k[c] = static_cast<acc_t>(k);
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
