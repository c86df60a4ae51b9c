// C++ check of the fastgan operators built by CMakeLists.txt: calls every op through
// the dispatcher on CPU, as a C++ user would, and compares it with the same math
// composed from ATen ops (autograd for the gradients). Prints one line per check and
// exits non-zero if any check fails. Semantics: docs/operators.md.
//
// typed<> requires the exact C++ signature the kernels were registered with; these
// are the canonical ones (const Tensor&, const std::optional<Tensor>&, double, bool,
// c10::string_view), so a kernel registered otherwise fails here with torch's
// "wrong signature" message.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using Tensor2 = std::tuple<Tensor, Tensor>;
using Tensor3 = std::tuple<Tensor, Tensor, Tensor>;
using Tensor4 = std::tuple<Tensor, Tensor, Tensor, Tensor>;

// The fp32 contract in docs: equal to the eager composition within 1e-5.
constexpr double kTol = 1e-5;

int failures = 0;

template <class Sig>
c10::TypedOperatorHandle<Sig> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

void expect_close(const std::string& what, const Tensor& got, const Tensor& want) {
  std::string problem;
  if (got.sizes() != want.sizes()) {
    std::ostringstream msg;
    msg << "shape " << got.sizes() << ", expected " << want.sizes();
    problem = msg.str();
  } else if (got.scalar_type() != want.scalar_type()) {
    problem = std::string("dtype ") + c10::toString(got.scalar_type()) + ", expected " +
              c10::toString(want.scalar_type());
  } else if (!at::allclose(got, want, kTol, kTol)) {
    problem = "max abs diff " + std::to_string((got - want).abs().max().item<double>());
  }
  if (!problem.empty()) ++failures;
  std::cout << (problem.empty() ? "ok    " : "FAIL  ") << what
            << (problem.empty() ? "" : ": " + problem) << "\n";
}

void expect(const std::string& what, bool condition) {
  if (!condition) ++failures;
  std::cout << (condition ? "ok    " : "FAIL  ") << what << "\n";
}

// A check that throws (missing kernel, wrong signature, TORCH_CHECK) fails, the rest go on.
void run(const std::string& name, const std::function<void()>& check) {
  try {
    check();
  } catch (const c10::Error& e) {
    ++failures;
    std::cout << "FAIL  " << name << " threw: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    ++failures;
    std::cout << "FAIL  " << name << " threw: " << e.what() << "\n";
  }
}

Tensor reference_bn_act(const Tensor& x, const OptTensor& w, const OptTensor& b, double eps,
                        double slope) {
  Tensor z = at::batch_norm(x, w, b, /*running_mean=*/{}, /*running_var=*/{}, /*training=*/true,
                            /*momentum=*/0.1, eps, /*cudnn_enabled=*/false);
  return at::leaky_relu(z, slope);
}

void check_bn_forward(const std::string& name, const Tensor& x, const OptTensor& w,
                      const OptTensor& b, double slope) {
  const double eps = 1e-5;
  auto [out, mean, var, invstd] =
      op<Tensor4(const Tensor&, const OptTensor&, const OptTensor&, double, double, bool)>(
          "fastgan::bn_act_train")
          .call(x, w, b, eps, slope, false);
  expect_close(name + " bn_act_train out", out, reference_bn_act(x, w, b, eps, slope));
  expect_close(name + " bn_act_train mean", mean, x.mean({0, 2, 3}));
  expect_close(name + " bn_act_train var", var, x.var({0, 2, 3}, /*unbiased=*/false));
  expect_close(name + " bn_act_train invstd", invstd, (var + eps).rsqrt());
  // The inputs here are NCHW- or channels_last-contiguous, so the kernel keeps that layout.
  expect(name + " bn_act_train out keeps the input's layout",
         out.is_contiguous(x.suggest_memory_format()));

  auto [s_mean, s_var] = op<Tensor2(const Tensor&)>("fastgan::bn_stats").call(x);
  expect_close(name + " bn_stats mean", s_mean, mean);
  expect_close(name + " bn_stats var", s_var, var);

  Tensor applied = op<Tensor(const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                             const OptTensor&, double, bool)>("fastgan::bn_act_apply")
                       .call(x, mean, invstd, w, b, slope, false);
  expect_close(name + " bn_act_apply", applied, out);
}

// Training backward as csrc/autograd.cpp composes it (docs/operators.md), from the saved
// input and from the saved output, against autograd through the ATen composition.
void check_bn_backward(const std::string& name, const Tensor& x, const Tensor& w, const Tensor& b,
                       double slope) {
  const double eps = 1e-5;
  Tensor xr = x.detach().clone().requires_grad_(true);
  Tensor wr = w.detach().clone().requires_grad_(true);
  Tensor br = b.detach().clone().requires_grad_(true);
  Tensor grad_out = at::randn_like(x);
  reference_bn_act(xr, wr, br, eps, slope).backward(grad_out);

  auto [out, mean, var, invstd] =
      op<Tensor4(const Tensor&, const OptTensor&, const OptTensor&, double, double, bool)>(
          "fastgan::bn_act_train")
          .call(x, w, b, eps, slope, true);
  const double n = static_cast<double>(x.numel() / x.size(1));
  auto reduce = op<Tensor2(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const OptTensor&, const OptTensor&, double, bool)>(
      "fastgan::bn_act_backward_reduce");
  auto input_grad = op<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const OptTensor&, const OptTensor&, const Tensor&, const Tensor&,
                              double, bool)>("fastgan::bn_act_backward_input");

  // ReLU is not invertible: grad_input needs xhat of every element, masked ones included,
  // so recovering from the output is only checked for slope > 0 (as inplace_abn requires).
  for (bool saved_is_output : {false, true}) {
    if (saved_is_output && slope == 0.0) continue;
    const Tensor& saved = saved_is_output ? out : x;
    const std::string tag = name + (saved_is_output ? " (saved output)" : " (saved input)");
    auto [sum_dz, sum_dz_xhat] =
        reduce.call(grad_out, saved, mean, invstd, w, b, slope, saved_is_output);
    expect_close(tag + " grad_bias", sum_dz, br.grad());
    expect_close(tag + " grad_weight", sum_dz_xhat, wr.grad());
    Tensor grad_input = input_grad.call(grad_out, saved, mean, invstd, w, b, sum_dz / n,
                                        sum_dz_xhat / n, slope, saved_is_output);
    expect_close(tag + " grad_input", grad_input, xr.grad());

    // The same gradients through the op's registered autograd formula, as C++ training
    // code that calls the op on tensors requiring grad gets them.
    Tensor xa = x.detach().clone().requires_grad_(true);
    Tensor wa = w.detach().clone().requires_grad_(true);
    Tensor ba = b.detach().clone().requires_grad_(true);
    std::get<0>(op<Tensor4(const Tensor&, const OptTensor&, const OptTensor&, double, double, bool)>(
                    "fastgan::bn_act_train")
                    .call(xa, wa, ba, eps, slope, saved_is_output))
        .backward(grad_out);
    expect_close(tag + " autograd grad_input", xa.grad(), xr.grad());
    expect_close(tag + " autograd grad_weight", wa.grad(), wr.grad());
    expect_close(tag + " autograd grad_bias", ba.grad(), br.grad());
  }
}

// Each loss mode against its ATen composition; gradients from autograd of that composition.
void check_gan_losses() {
  auto d_loss = op<Tensor3(const Tensor&, const Tensor&, c10::string_view, double, double)>(
      "fastgan::gan_d_loss");
  auto g_loss = op<Tensor2(const Tensor&, c10::string_view, double)>("fastgan::gan_g_loss");
  const double t_real = 0.9, t_fake = 0.1;  // smoothed targets, so targets are really used
  // Each mode: real term and fake term of the D loss, then the G loss; t is the target.
  using Loss = std::function<Tensor(const Tensor&, double)>;
  const Loss bce = [](const Tensor& x, double t) {
    return at::binary_cross_entropy_with_logits(x, at::full_like(x, t));
  };
  const Loss mse = [](const Tensor& x, double t) { return at::mse_loss(x, at::full_like(x, t)); };
  const Loss mean = [](const Tensor& x, double) { return x.mean(); };
  const Loss neg_mean = [](const Tensor& x, double) { return -x.mean(); };
  const Loss hinge_real = [](const Tensor& x, double) { return at::relu(1 - x).mean(); };
  const Loss hinge_fake = [](const Tensor& x, double) { return at::relu(1 + x).mean(); };
  const std::tuple<const char*, Loss, Loss, Loss> modes[] = {
      {"vanilla", bce, bce, bce},
      {"lsgan", mse, mse, mse},
      {"hinge", hinge_real, hinge_fake, neg_mean},
      {"wgan", neg_mean, mean, neg_mean},
  };
  // PatchGAN maps; real and fake of different sizes so n_r and n_f cannot be mixed up.
  const Tensor real = at::randn({2, 1, 5, 5}) * 2;
  const Tensor fake = at::randn({3, 1, 4, 4}) * 2;
  for (const auto& [mode, real_term, fake_term, g_term] : modes) {
    const std::string m = mode;
    run("gan_d_loss " + m, [&] {
      Tensor r = real.clone().requires_grad_(true), f = fake.clone().requires_grad_(true);
      Tensor want = real_term(r, t_real) + fake_term(f, t_fake);
      want.backward();
      auto [loss, grad_real, grad_fake] = d_loss.call(real, fake, mode, t_real, t_fake);
      expect_close("gan_d_loss " + m + " loss", loss, want.detach());
      expect_close("gan_d_loss " + m + " grad_real", grad_real, r.grad());
      expect_close("gan_d_loss " + m + " grad_fake", grad_fake, f.grad());
    });
    run("gan_g_loss " + m, [&] {
      Tensor f = fake.clone().requires_grad_(true);
      Tensor want = g_term(f, t_real);
      want.backward();
      auto [loss, grad_fake] = g_loss.call(fake, mode, t_real);
      expect_close("gan_g_loss " + m + " loss", loss, want.detach());
      expect_close("gan_g_loss " + m + " grad_fake", grad_fake, f.grad());
    });
  }
}

}  // namespace

int main() {
  at::manual_seed(0);
  const Tensor x = at::randn({4, 3, 5, 7}) * 2 + 0.5;
  const Tensor x_cl = x.contiguous(at::MemoryFormat::ChannelsLast);
  // Weights kept away from 0: recovering xhat from the saved output divides by them.
  const Tensor w = at::rand({3}) + 0.5;
  const Tensor b = at::randn({3}) * 0.1;

  run("NCHW", [&] { check_bn_forward("NCHW", x, w, b, 0.2); });
  run("NHWC", [&] { check_bn_forward("NHWC", x_cl, w, b, 0.2); });
  run("no affine", [&] { check_bn_forward("no affine", x, std::nullopt, std::nullopt, 0.2); });
  run("ReLU", [&] { check_bn_forward("ReLU", x, w, b, 0.0); });
  run("NCHW backward", [&] { check_bn_backward("NCHW", x, w, b, 0.2); });
  run("NHWC backward", [&] { check_bn_backward("NHWC", x_cl, w, b, 0.2); });
  run("ReLU backward", [&] { check_bn_backward("ReLU", x, w, b, 0.0); });
  run("GAN losses", check_gan_losses);

  if (failures) {
    std::cout << failures << " fastgan op check(s) FAILED\n";
    return 1;
  }
  std::cout << "all fastgan op checks passed\n";
  return 0;
}
