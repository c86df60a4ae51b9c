// Autograd kernels of the differentiable fastgan operators, registered in C++ against the
// schemas of ops.cpp. A formula registered from Python (torch.library.register_autograd)
// costs every call a trip through the Python autograd.Function machinery: on an H100 the
// fused BatchNorm+LeakyReLU's fwd+bwd at small shapes took 2.5x eager's time, all of it host
// overhead (benchmarks/README.md, "Host overhead"). Here forward and
// backward stay in C++ and reach the CPU/CUDA kernels through the dispatcher, so
// torch.compile, the fakes of fastgan/ops/_registration.py and opcheck see the same ops.
//
// The backward kernels are not differentiable. When a gradient will itself be differentiated
// (create_graph=True: gradient penalties such as R1 or WGAN-GP), grad mode is on inside
// backward, and the formulas differentiate the composition of ATen ops that computes the same
// function (fastgan/ops/reference.py's) instead, from the saved inputs.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

#include "common.h"

namespace fastgan {
namespace {

using at::Tensor;
using c10::optional;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---- the ops below autograd, through the dispatcher ----

using TrainSig = std::tuple<Tensor, Tensor, Tensor, Tensor>(const Tensor&, const optional<Tensor>&,
                                                            const optional<Tensor>&, double, double,
                                                            bool);
using ApplySig = Tensor(const Tensor&, const Tensor&, const Tensor&, const optional<Tensor>&,
                        const optional<Tensor>&, double, bool);
using ReduceSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                             const Tensor&, const optional<Tensor>&,
                                             const optional<Tensor>&, double, bool);
using InputSig = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                        const optional<Tensor>&, const optional<Tensor>&, const Tensor&,
                        const Tensor&, double, bool);
using DLossSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&,
                                                    c10::string_view, double, double);
using GLossSig = std::tuple<Tensor, Tensor>(const Tensor&, c10::string_view, double);

template <class Sig>
c10::TypedOperatorHandle<Sig> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

std::tuple<Tensor, Tensor, Tensor, Tensor> call_train(const Tensor& x, const optional<Tensor>& w,
                                                      const optional<Tensor>& b, double eps,
                                                      double slope, bool save_output) {
  static const auto handle = op<TrainSig>("fastgan::bn_act_train");
  return handle.call(x, w, b, eps, slope, save_output);
}

Tensor call_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                  const optional<Tensor>& w, const optional<Tensor>& b, double slope,
                  bool save_output) {
  static const auto handle = op<ApplySig>("fastgan::bn_act_apply");
  return handle.call(x, mean, invstd, w, b, slope, save_output);
}

std::tuple<Tensor, Tensor> call_reduce(const Tensor& g, const Tensor& saved, const Tensor& mean,
                                       const Tensor& invstd, const optional<Tensor>& w,
                                       const optional<Tensor>& b, double slope,
                                       bool saved_is_output) {
  static const auto handle = op<ReduceSig>("fastgan::bn_act_backward_reduce");
  return handle.call(g, saved, mean, invstd, w, b, slope, saved_is_output);
}

Tensor call_input(const Tensor& g, const Tensor& saved, const Tensor& mean, const Tensor& invstd,
                  const optional<Tensor>& w, const optional<Tensor>& b, const Tensor& mean_dz,
                  const Tensor& mean_dz_xhat, double slope, bool saved_is_output) {
  static const auto handle = op<InputSig>("fastgan::bn_act_backward_input");
  return handle.call(g, saved, mean, invstd, w, b, mean_dz, mean_dz_xhat, slope, saved_is_output);
}

// ---- small helpers ----

optional<Tensor> maybe(const Tensor& t) {
  return t.defined() ? optional<Tensor>(t) : c10::nullopt;
}

Tensor per_channel(const Tensor& v) { return v.view({1, -1, 1, 1}); }

// grad_out in the layout both backward kernels read it in (that of the saved tensor): a
// gradient that arrives otherwise (expanded by sum(), or another memory format) is copied once
// here, not once in each kernel.
Tensor in_kernel_layout(const Tensor& grad_out, const Tensor& saved) {
  return grad_out.contiguous(kernel_layout(saved));
}

// The differentiable inputs among `inputs` (undefined = not a tensor argument), in order.
std::vector<bool> wanted(AutogradContext* ctx, const variable_list& inputs) {
  // Autograd numbers its edges over the defined tensor arguments only.
  std::vector<bool> needs(inputs.size(), false);
  size_t edge = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined()) needs[i] = ctx->needs_input_grad(edge++);
  }
  return needs;
}

// d(value)/d(inputs) * grad, with a graph (create_graph=True), for the inputs in `needs`;
// undefined for the rest.
variable_list grads_with_graph(const Tensor& value, const variable_list& inputs,
                               const std::vector<bool>& needs, const Tensor& grad) {
  variable_list targets;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (needs[i]) targets.push_back(inputs[i]);
  }
  variable_list result(inputs.size());
  if (targets.empty()) return result;
  const variable_list grads = torch::autograd::grad({value}, targets, {grad},
                                                    /*retain_graph=*/true, /*create_graph=*/true,
                                                    /*allow_unused=*/true);
  size_t next = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (needs[i]) result[i] = grads[next++];
  }
  return result;
}

void refuse_double_backward_in_place(bool saved_is_output) {
  TORCH_CHECK(!saved_is_output,
              "fastgan: double backward (create_graph=True) is not supported in in-place mode "
              "(inplace=True / save_output=True): the input was overwritten, so the gradient "
              "cannot be differentiated with respect to it; use inplace=False for gradient "
              "penalties");
}

// ---- the ATen compositions differentiated when create_graph=True ----

Tensor normalize_act(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& w,
                     const Tensor& b, double slope) {
  Tensor z = (x.to(stat_dtype(x)) - per_channel(mean)) * per_channel(invstd);
  if (w.defined()) z = z * per_channel(w);
  if (b.defined()) z = z + per_channel(b);
  // slope 0 is ReLU: a -inf pre-activation gives 0 (leaky_relu's -inf * 0 would be nan).
  return (slope == 0 ? at::relu(z) : at::leaky_relu(z, slope)).to(x.scalar_type());
}

Tensor train_composite(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                       double slope) {
  const auto [var, mean] = at::var_mean(x.to(stat_dtype(x)), at::IntArrayRef{0, 2, 3},
                                        /*correction=*/0, /*keepdim=*/false);
  return normalize_act(x, mean, at::rsqrt(var + eps), w, b, slope);
}

Tensor mean_term(const Tensor& logits, GanMode mode, double target, bool real) {
  const Tensor x = logits.to(stat_dtype(logits));
  switch (mode) {
    case GanMode::Vanilla:
      return at::binary_cross_entropy_with_logits(x, at::full_like(x, target));
    case GanMode::LSGAN:
      return at::mse_loss(x, at::full_like(x, target));
    case GanMode::Hinge:
      return real ? at::relu(1.0 - x).mean() : at::relu(1.0 + x).mean();
    case GanMode::WGAN:
      return real ? -x.mean() : x.mean();
  }
  TORCH_CHECK(false, "fastgan: unknown GAN loss mode");
}

Tensor d_loss_composite(const Tensor& real, const Tensor& fake, GanMode mode, double target_real,
                        double target_fake) {
  return mean_term(real, mode, target_real, true) + mean_term(fake, mode, target_fake, false);
}

Tensor g_loss_composite(const Tensor& fake, GanMode mode, double target_real) {
  if (mode == GanMode::Hinge || mode == GanMode::WGAN) return -fake.to(stat_dtype(fake)).mean();
  return mean_term(fake, mode, target_real, true);
}

// ---- BatchNorm + LeakyReLU ----

// Gradients of outputs that nothing used (the statistics, a loss's own gradient maps) stay
// undefined instead of being filled with zeros: two or three allocations and fills per backward,
// pure host time at the small shapes (benchmarks/README.md, "Host overhead").
void skip_unused_grads(AutogradContext* ctx) { ctx->set_materialize_grads(false); }

void save_bn(AutogradContext* ctx, const Tensor& x, const Tensor& out, double slope,
             bool save_output, std::initializer_list<Tensor> per_channel_tensors) {
  // Keeping `out` instead of `x` is the in-place activated BatchNorm idea: the input
  // activation is then free to go as soon as the forward is done.
  variable_list saved{save_output ? out : x};
  saved.insert(saved.end(), per_channel_tensors);
  ctx->save_for_backward(saved);
  ctx->saved_data["slope"] = slope;
  ctx->saved_data["saved_is_output"] = save_output;
}

struct BnActTrain : torch::autograd::Function<BnActTrain> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const optional<Tensor>& w,
                               const optional<Tensor>& b, double eps, double slope,
                               bool save_output) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [out, mean, var, invstd] = call_train(x, w, b, eps, slope, save_output);
    skip_unused_grads(ctx);
    save_bn(ctx, x, out, slope, save_output,
            {mean, invstd, w.value_or(Tensor()), b.value_or(Tensor())});
    ctx->saved_data["eps"] = eps;
    ctx->mark_non_differentiable({mean, var, invstd});
    return {out, mean, var, invstd};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &s = saved[0], &mean = saved[1], &invstd = saved[2], &w = saved[3],
                 &b = saved[4];
    const double eps = ctx->saved_data["eps"].toDouble();
    const double slope = ctx->saved_data["slope"].toDouble();
    const bool saved_is_output = ctx->saved_data["saved_is_output"].toBool();
    const Tensor& grad_out = grads[0];
    variable_list result(6);
    if (!grad_out.defined()) return result;  // no gradient reached the output: none to give
    const variable_list inputs{s, w, b};
    const std::vector<bool> needs = wanted(ctx, inputs);
    if (at::GradMode::is_enabled()) {
      refuse_double_backward_in_place(saved_is_output);
      const variable_list g =
          grads_with_graph(train_composite(s, w, b, eps, slope), inputs, needs, grad_out);
      std::copy(g.begin(), g.end(), result.begin());
      return result;
    }
    // Grad mode is off here: the kernels go straight below autograd, not through the boxed
    // fallback that ops without an Autograd kernel take (host time on every backward).
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const Tensor g = in_kernel_layout(grad_out, s);
    auto [sum_dz, sum_dz_xhat] =
        call_reduce(g, s, mean, invstd, maybe(w), maybe(b), slope, saved_is_output);
    if (needs[0]) {
      // N*H*W, symbolic under torch.compile's dynamic shapes (and no division: C may be 0).
      const c10::Scalar count(s.sym_size(0) * s.sym_size(2) * s.sym_size(3));
      result[0] = call_input(g, s, mean, invstd, maybe(w), maybe(b), sum_dz / count,
                             sum_dz_xhat / count, slope, saved_is_output);
    }
    if (w.defined()) result[1] = sum_dz_xhat;
    if (b.defined()) result[2] = sum_dz;
    return result;
  }
};

struct BnActApply : torch::autograd::Function<BnActApply> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& mean,
                               const Tensor& invstd, const optional<Tensor>& w,
                               const optional<Tensor>& b, double slope, bool save_output) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    Tensor out = call_apply(x, mean, invstd, w, b, slope, save_output);
    skip_unused_grads(ctx);
    save_bn(ctx, x, out, slope, save_output,
            {mean, invstd, w.value_or(Tensor()), b.value_or(Tensor())});
    return {out};
  }

  // Statistics are inputs here (eval mode, or a synchronized forward).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &s = saved[0], &mean = saved[1], &invstd = saved[2], &w = saved[3],
                 &b = saved[4];
    const double slope = ctx->saved_data["slope"].toDouble();
    const bool saved_is_output = ctx->saved_data["saved_is_output"].toBool();
    const Tensor& grad_out = grads[0];
    variable_list result(7);
    if (!grad_out.defined()) return result;  // no gradient reached the output: none to give
    const variable_list inputs{s, mean, invstd, w, b};
    const std::vector<bool> needs = wanted(ctx, inputs);
    if (at::GradMode::is_enabled()) {
      refuse_double_backward_in_place(saved_is_output);
      const variable_list g = grads_with_graph(normalize_act(s, mean, invstd, w, b, slope), inputs,
                                               needs, grad_out);
      std::copy(g.begin(), g.end(), result.begin());
      return result;
    }
    // Grad mode is off here: the kernels go straight below autograd, not through the boxed
    // fallback that ops without an Autograd kernel take (host time on every backward).
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const Tensor g = in_kernel_layout(grad_out, s);
    if (needs[0]) {
      const Tensor zeros = at::zeros_like(mean);
      result[0] = call_input(g, s, mean, invstd, maybe(w), maybe(b), zeros, zeros, slope,
                             saved_is_output);
    }
    if (needs[1] || needs[2] || needs[3] || needs[4]) {
      auto [sum_dz, sum_dz_xhat] =
          call_reduce(g, s, mean, invstd, maybe(w), maybe(b), slope, saved_is_output);
      const Tensor scale = w.defined() ? w : at::ones_like(mean);
      if (needs[1]) result[1] = -sum_dz * invstd * scale;
      if (needs[2]) result[2] = sum_dz_xhat * scale / invstd;
      if (needs[3]) result[3] = sum_dz_xhat;
      if (needs[4]) result[4] = sum_dz;
    }
    return result;
  }
};

// ---- GAN losses: the forward already computed d loss / d logits ----

struct GanDLoss : torch::autograd::Function<GanDLoss> {
  static variable_list forward(AutogradContext* ctx, const Tensor& real, const Tensor& fake,
                               c10::string_view mode, double target_real, double target_fake) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    static const auto handle = op<DLossSig>("fastgan::gan_d_loss");
    auto [loss, grad_real, grad_fake] = handle.call(real, fake, mode, target_real, target_fake);
    // The logit maps are small; they are kept for create_graph=True.
    skip_unused_grads(ctx);
    ctx->save_for_backward({grad_real, grad_fake, real, fake});
    ctx->saved_data["mode"] = std::string(mode);
    ctx->saved_data["target_real"] = target_real;
    ctx->saved_data["target_fake"] = target_fake;
    ctx->mark_non_differentiable({grad_real, grad_fake});
    return {loss, grad_real, grad_fake};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& grad_loss = grads[0];
    variable_list result(5);
    if (!grad_loss.defined()) return result;  // no gradient reached the output: none to give
    if (at::GradMode::is_enabled()) {
      const variable_list inputs{saved[2], saved[3]};
      const Tensor loss = d_loss_composite(
          saved[2], saved[3], parse_gan_mode(ctx->saved_data["mode"].toStringRef()),
          ctx->saved_data["target_real"].toDouble(), ctx->saved_data["target_fake"].toDouble());
      const variable_list g = grads_with_graph(loss, inputs, wanted(ctx, inputs), grad_loss);
      std::copy(g.begin(), g.end(), result.begin());
      return result;
    }
    // Both maps scaled in one foreach call: one launch on a GPU for fp32/fp64 maps (half-type maps
    // meet the fp32 loss's gradient, and CUDA's foreach then takes its two-launch path).
    const variable_list scaled = at::_foreach_mul({saved[0], saved[1]}, grad_loss);
    result[0] = scaled[0];
    result[1] = scaled[1];
    return result;
  }
};

struct GanGLoss : torch::autograd::Function<GanGLoss> {
  static variable_list forward(AutogradContext* ctx, const Tensor& fake, c10::string_view mode,
                               double target_real) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    static const auto handle = op<GLossSig>("fastgan::gan_g_loss");
    auto [loss, grad_fake] = handle.call(fake, mode, target_real);
    skip_unused_grads(ctx);
    ctx->save_for_backward({grad_fake, fake});
    ctx->saved_data["mode"] = std::string(mode);
    ctx->saved_data["target_real"] = target_real;
    ctx->mark_non_differentiable({grad_fake});
    return {loss, grad_fake};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& grad_loss = grads[0];
    variable_list result(3);
    if (!grad_loss.defined()) return result;  // no gradient reached the output: none to give
    if (at::GradMode::is_enabled()) {
      const variable_list inputs{saved[1]};
      const Tensor loss = g_loss_composite(saved[1],
                                           parse_gan_mode(ctx->saved_data["mode"].toStringRef()),
                                           ctx->saved_data["target_real"].toDouble());
      result[0] = grads_with_graph(loss, inputs, wanted(ctx, inputs), grad_loss)[0];
      return result;
    }
    result[0] = saved[0] * grad_loss;
    return result;
  }
};

// ---- the Autograd kernels ----

std::tuple<Tensor, Tensor, Tensor, Tensor> bn_act_train_autograd(const Tensor& x,
                                                                 const optional<Tensor>& w,
                                                                 const optional<Tensor>& b,
                                                                 double eps, double slope,
                                                                 bool save_output) {
  const variable_list out = BnActTrain::apply(x, w, b, eps, slope, save_output);
  return {out[0], out[1], out[2], out[3]};
}

Tensor bn_act_apply_autograd(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                             const optional<Tensor>& w, const optional<Tensor>& b, double slope,
                             bool save_output) {
  return BnActApply::apply(x, mean, invstd, w, b, slope, save_output)[0];
}

std::tuple<Tensor, Tensor, Tensor> gan_d_loss_autograd(const Tensor& real, const Tensor& fake,
                                                       c10::string_view mode, double target_real,
                                                       double target_fake) {
  const variable_list out = GanDLoss::apply(real, fake, mode, target_real, target_fake);
  return {out[0], out[1], out[2]};
}

std::tuple<Tensor, Tensor> gan_g_loss_autograd(const Tensor& fake, c10::string_view mode,
                                               double target_real) {
  const variable_list out = GanGLoss::apply(fake, mode, target_real);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) {
  m.impl("bn_act_train", &bn_act_train_autograd);
  m.impl("bn_act_apply", &bn_act_apply_autograd);
  m.impl("gan_d_loss", &gan_d_loss_autograd);
  m.impl("gan_g_loss", &gan_g_loss_autograd);
}

}  // namespace fastgan
