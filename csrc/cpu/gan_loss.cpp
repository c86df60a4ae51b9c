// CPU kernels of the GAN losses (docs/operators.md). One pass over each logit
// map writes d loss / d logit and sums the per-element loss; the sum is kept in
// double (per-element terms in float for float and half logits), in per-block
// partials combined in a fixed order so the result does not depend on the
// schedule.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/bit_cast.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common.h"
#include "cpu/select.h"

namespace fastgan {
namespace {

// Elements per parallel task; logit maps are small, so most run on one thread.
constexpr int64_t kBlock = 32768;
// Independent double accumulators, so the sum vectorizes.
constexpr int64_t kLanes = 16;

// The per-element loss of one logit map, as a function of the logit x.
enum class Term {
  BCE,     // max(x, 0) - x t + log1p(exp(-|x|)), stable BCE with logits
  Square,  // (x - t)^2
  Hinge,   // relu(1 + sign x)
  Linear,  // sign x
};

// max(v, 0), NaN staying NaN.
template <typename T>
inline T relu(T v) {
  return pick(v < 0, T(0), v);
}

// exp(y) for y <= 0, in float, as arithmetic that vectorizes (a libm call
// keeps the loop scalar): y = n ln2 + r with |r| <= ln2 / 2, a degree-7 Taylor
// polynomial for e^r (truncation below float's last place), 2^n from bits.
// Below -87 the result (under 2^-125) is returned as 0; NaN stays NaN.
inline float exp_nonpositive(float y) {
  const float yc = pick(y < -87.0f, -87.0f, y);  // keeps 2^n a normal float
  // Adding 1.5 * 2^23 rounds to an integer n, left in the low mantissa bits.
  constexpr float kRound = 12582912.0f;
  const float t = yc * 1.44269504f + kRound;
  const float n = t - kRound;
  const float r = (yc - n * 0.693145751953125f) - n * 1.42860677e-6f;  // ln2 in two parts
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n in unsigned arithmetic, defined for any bits t may hold.
  const uint32_t scale =
      (c10::bit_cast<uint32_t>(t) - c10::bit_cast<uint32_t>(kRound) + 127u) << 23;
  return pick(y < -87.0f, 0.0f, p * c10::bit_cast<float>(scale));
}

// log(1 + e) for e in [0, 1], in float: 2 atanh(s) with s = e / (2 + e) <= 1/3,
// whose odd series converges below float's last place by the s^15 term.
inline float log1p_unit(float e) {
  const float s = e / (2.0f + e);
  const float s2 = s * s;
  float p = 1.0f / 15;
  p = p * s2 + 1.0f / 13;
  p = p * s2 + 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

inline float exp_nonpositive_or_libm(float y) { return exp_nonpositive(y); }
inline double exp_nonpositive_or_libm(double y) { return std::exp(y); }
inline float log1p_unit_or_libm(float e) { return log1p_unit(e); }
inline double log1p_unit_or_libm(double e) { return std::log1p(e); }

template <Term kTerm, typename acc_t>
inline acc_t term(acc_t x, acc_t t, acc_t sign, acc_t inv_n, acc_t& grad) {
  if constexpr (kTerm == Term::BCE) {
    // exp(-|x|) never overflows; it gives log1p for the loss and, with one
    // division, the sigmoid on either side of 0. Double logits keep libm.
    const acc_t e = exp_nonpositive_or_libm(-std::abs(x));
    const acc_t r = acc_t(1) / (acc_t(1) + e);
    const acc_t sigmoid = pick(x >= 0, r, e * r);
    grad = (sigmoid - t) * inv_n;
    // max(x, 0) - x t without cancelling: -x t for x < 0 (a small soft target t stays
    // exact), (1 - t) x otherwise, so that x = +inf with t = 0 gives +inf.
    return pick(x < 0, -x * t, (1 - t) * x) + log1p_unit_or_libm(e);
  } else if constexpr (kTerm == Term::Square) {
    const acc_t d = x - t;
    grad = 2 * d * inv_n;
    return d * d;
  } else if constexpr (kTerm == Term::Hinge) {
    const acc_t h = acc_t(1) + sign * x;
    grad = pick(h > 0, sign * inv_n, acc_t(0));
    return relu(h);
  } else {
    grad = sign * inv_n;
    return sign * x;
  }
}

// Sum of the term over x[0, n), writing each element's gradient to g.
template <Term kTerm, typename acc_t>
double run_loss(const acc_t* __restrict x, acc_t* __restrict g, int64_t n, acc_t t, acc_t sign,
                acc_t inv_n) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) {
      lanes[j] += term<kTerm>(x[i + j], t, sign, inv_n, g[i + j]);
    }
  }
  for (; i < n; ++i) lanes[0] += term<kTerm>(x[i], t, sign, inv_n, g[i]);
  double sum = 0.0;
  for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
  return sum;
}

// The same for any logit dtype. Half types go through float tiles in L1, so
// that their one-element conversions stay out of the vectorized loop.
template <Term kTerm, typename scalar_t>
double block_loss(const scalar_t* x, scalar_t* g, int64_t n, at::opmath_type<scalar_t> t,
                  at::opmath_type<scalar_t> sign, at::opmath_type<scalar_t> inv_n) {
  using acc_t = at::opmath_type<scalar_t>;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return run_loss<kTerm>(x, g, n, t, sign, inv_n);
  } else {
    constexpr int64_t kTile = 512;
    acc_t xs[kTile], gs[kTile];
    double sum = 0.0;
    for (int64_t start = 0; start < n; start += kTile) {
      const int64_t m = std::min(kTile, n - start);
      for (int64_t i = 0; i < m; ++i) xs[i] = static_cast<acc_t>(x[start + i]);
      sum += run_loss<kTerm>(xs, gs, m, t, sign, inv_n);
      for (int64_t i = 0; i < m; ++i) g[start + i] = static_cast<scalar_t>(gs[i]);
    }
    return sum;
  }
}

// Mean of the term over a logit map and its gradient (contiguous, logit dtype).
template <Term kTerm>
double map_loss(const at::Tensor& logits, double target, double sign, at::Tensor& grad) {
  const at::Tensor x = logits.contiguous();
  grad = at::empty(x.sizes(), x.options());
  const int64_t n = x.numel();
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(blocks);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastgan::gan_loss",
                                  [&] {
                                    using acc_t = at::opmath_type<scalar_t>;
                                    const scalar_t* xp = x.const_data_ptr<scalar_t>();
                                    scalar_t* gp = grad.mutable_data_ptr<scalar_t>();
                                    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
                                      for (int64_t b = b0; b < b1; ++b) {
                                        const int64_t off = b * kBlock;
                                        part[b] = block_loss<kTerm>(
                                            xp + off, gp + off, std::min(kBlock, n - off),
                                            static_cast<acc_t>(target), static_cast<acc_t>(sign),
                                            static_cast<acc_t>(1.0 / n));
                                      }
                                    });
                                  });
  double sum = 0.0;
  for (double p : part) sum += p;
  return sum / n;
}

// Which logit map a loss term belongs to.
enum class Side { Real, Fake, Generator };

double side_loss(GanMode mode, Side side, const at::Tensor& logits, double target,
                 at::Tensor& grad) {
  switch (mode) {
    case GanMode::Vanilla:
      return map_loss<Term::BCE>(logits, target, 0.0, grad);
    case GanMode::LSGAN:
      return map_loss<Term::Square>(logits, target, 0.0, grad);
    case GanMode::Hinge:
      if (side == Side::Generator) return map_loss<Term::Linear>(logits, 0.0, -1.0, grad);
      return map_loss<Term::Hinge>(logits, 0.0, side == Side::Real ? -1.0 : 1.0, grad);
    case GanMode::WGAN:
      return map_loss<Term::Linear>(logits, 0.0, side == Side::Fake ? 1.0 : -1.0, grad);
  }
  TORCH_CHECK(false, "fastgan: unhandled GAN loss mode");
}

at::Tensor loss_tensor(double value, const at::Tensor& logits) {
  return at::scalar_tensor(value, logits.options().dtype(stat_dtype(logits)));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gan_d_loss_cpu(const at::Tensor& real_logits,
                                                              const at::Tensor& fake_logits,
                                                              c10::string_view mode,
                                                              double target_real,
                                                              double target_fake) {
  check_logit_pair(real_logits, fake_logits);
  const GanMode m = parse_gan_mode(std::string(mode));
  at::Tensor grad_real, grad_fake;
  const double loss = side_loss(m, Side::Real, real_logits, target_real, grad_real) +
                      side_loss(m, Side::Fake, fake_logits, target_fake, grad_fake);
  return {loss_tensor(loss, real_logits), grad_real, grad_fake};
}

std::tuple<at::Tensor, at::Tensor> gan_g_loss_cpu(const at::Tensor& fake_logits,
                                                  c10::string_view mode, double target_real) {
  check_logits(fake_logits, "fake_logits");
  const GanMode m = parse_gan_mode(std::string(mode));
  at::Tensor grad_fake;
  const double loss = side_loss(m, Side::Generator, fake_logits, target_real, grad_fake);
  return {loss_tensor(loss, fake_logits), grad_fake};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("gan_d_loss", &gan_d_loss_cpu);
  m.impl("gan_g_loss", &gan_g_loss_cpu);
}

}  // namespace fastgan
