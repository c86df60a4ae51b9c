// Helpers shared by the CPU and CUDA kernels: layout choice, argument checks (and
// their messages' text) and loss-mode parsing, so both backends agree on every rule.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace fastgan {

// Text for error messages, each the same as torch's own. Messages are built from strings
// only: no number, shape, dtype or device goes through an std::ostream in this library.
// TORCH_CHECK formats its arguments with c10::str, an ostringstream in our .so; on the GPU
// image (torch built with another g++/libstdc++ than the extension) a TORCH_CHECK whose
// message held an int or a shape segfaulted, most likely in the lookup of libstdc++'s
// num_put locale facet that inserting a number does from inline header code. Inserting
// strings does not use that facet, and messages of strings only worked there.
inline std::string to_text(int64_t v) { return std::to_string(v); }

// As an ostream prints a double by default ("%g"): 0.2 -> "0.2", 1e-07, -inf, nan.
inline std::string to_text(double v) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", v);
  return text;
}

// As torch prints sizes: "[2, 3, 4]", "[]" for a 0-d tensor.
inline std::string to_text(at::IntArrayRef sizes) {
  std::string text;
  for (const int64_t size : sizes) text += (text.empty() ? "" : ", ") + std::to_string(size);
  return "[" + text + "]";
}

inline const char* to_text(at::ScalarType t) { return c10::toString(t); }  // "Float"
inline std::string to_text(const at::Device& d) { return d.str(); }        // "cuda:0"

// The layout a kernel works in. NCHW when the input is contiguous, NHWC when it
// is channels_last-contiguous, NCHW (after a copy) for anything else. The Python
// fakes in fastgan/ops/_meta.py mirror this rule.
inline at::MemoryFormat kernel_layout(const at::Tensor& x) {
  if (x.is_contiguous()) return at::MemoryFormat::Contiguous;
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast)) return at::MemoryFormat::ChannelsLast;
  return at::MemoryFormat::Contiguous;
}

// Statistics and parameters are fp32, or fp64 for fp64 inputs.
inline at::ScalarType stat_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_bn_input(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 4, "fastgan: ", name, " must be 4-D (N, C, H, W), got ",
              to_text(x.dim()), "-D");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "fastgan: ", name, " must be float32/float16/bfloat16/float64, got ",
              to_text(x.scalar_type()));
}

// A per-channel vector (statistics, weight, bias) of C values on x's device.
inline void check_channel_vector(const at::Tensor& v, const at::Tensor& x, const char* name) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == x.size(1), "fastgan: ", name, " must have shape (",
              to_text(x.size(1)), ",), got ", to_text(v.sizes()));
  TORCH_CHECK(v.device() == x.device(), "fastgan: ", name, " is on ", to_text(v.device()),
              " but the input is on ", to_text(x.device()));
  TORCH_CHECK(v.scalar_type() == stat_dtype(x), "fastgan: ", name, " must be ",
              to_text(stat_dtype(x)), ", got ", to_text(v.scalar_type()));
}

inline void check_optional_channel_vector(const c10::optional<at::Tensor>& v, const at::Tensor& x,
                                          const char* name) {
  if (v.has_value()) check_channel_vector(*v, x, name);
}

// A per-channel vector as a contiguous tensor, or nullptr-backed default.
inline at::Tensor channel_vector_or(const c10::optional<at::Tensor>& v, const at::Tensor& x,
                                    double fill) {
  if (v.has_value()) return v->contiguous();
  return at::full({x.size(1)}, fill, x.options().dtype(stat_dtype(x)));
}

// Arguments of both backward ops. With slope <= 0 the output does not determine the
// input: the negative half is lost, and grad_input needs xhat of every element
// (through mean_dz_xhat), so recovering from the output is refused.
inline void check_backward_args(const at::Tensor& grad_out, const at::Tensor& saved,
                                const at::Tensor& mean, const at::Tensor& invstd,
                                const c10::optional<at::Tensor>& weight,
                                const c10::optional<at::Tensor>& bias, double negative_slope,
                                bool saved_is_output) {
  check_bn_input(grad_out, "grad_out");
  check_bn_input(saved, "saved");
  TORCH_CHECK(grad_out.sizes() == saved.sizes(), "fastgan: grad_out has shape ",
              to_text(grad_out.sizes()), " but saved has shape ", to_text(saved.sizes()));
  TORCH_CHECK(grad_out.scalar_type() == saved.scalar_type(), "fastgan: grad_out is ",
              to_text(grad_out.scalar_type()), " but saved is ", to_text(saved.scalar_type()));
  TORCH_CHECK(grad_out.device() == saved.device(), "fastgan: grad_out is on ",
              to_text(grad_out.device()), " but saved is on ", to_text(saved.device()));
  check_channel_vector(mean, saved, "mean");
  check_channel_vector(invstd, saved, "invstd");
  check_optional_channel_vector(weight, saved, "weight");
  check_optional_channel_vector(bias, saved, "bias");
  TORCH_CHECK(!saved_is_output || negative_slope > 0,
              "fastgan: recovering from the output needs negative_slope > 0, got ",
              to_text(negative_slope));
}

// bn_act_backward_input's arguments: the backward ones plus the two channel means.
inline void check_backward_input_args(const at::Tensor& grad_out, const at::Tensor& saved,
                                      const at::Tensor& mean, const at::Tensor& invstd,
                                      const c10::optional<at::Tensor>& weight,
                                      const c10::optional<at::Tensor>& bias,
                                      const at::Tensor& mean_dz, const at::Tensor& mean_dz_xhat,
                                      double negative_slope, bool saved_is_output) {
  check_backward_args(grad_out, saved, mean, invstd, weight, bias, negative_slope, saved_is_output);
  check_channel_vector(mean_dz, saved, "mean_dz");
  check_channel_vector(mean_dz_xhat, saved, "mean_dz_xhat");
}

enum class GanMode { Vanilla, LSGAN, Hinge, WGAN };

inline GanMode parse_gan_mode(const std::string& mode) {
  if (mode == "vanilla") return GanMode::Vanilla;
  if (mode == "lsgan") return GanMode::LSGAN;
  if (mode == "hinge") return GanMode::Hinge;
  if (mode == "wgan") return GanMode::WGAN;
  TORCH_CHECK(false, "fastgan: unknown GAN loss mode '", mode,
              "'; valid modes are vanilla, lsgan, hinge, wgan");
}

inline void check_logits(const at::Tensor& t, const char* name) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "fastgan: ", name,
              " must be a floating-point tensor, got ", to_text(t.scalar_type()));
  TORCH_CHECK(t.numel() > 0, "fastgan: ", name, " is empty");
}

// The real and the fake map of a discriminator loss: same dtype, same device.
inline void check_logit_pair(const at::Tensor& real, const at::Tensor& fake) {
  check_logits(real, "real_logits");
  check_logits(fake, "fake_logits");
  TORCH_CHECK(real.scalar_type() == fake.scalar_type(), "fastgan: real_logits is ",
              to_text(real.scalar_type()), " but fake_logits is ", to_text(fake.scalar_type()));
  TORCH_CHECK(real.device() == fake.device(), "fastgan: real_logits is on ",
              to_text(real.device()), " but fake_logits is on ", to_text(fake.device()));
}

}  // namespace fastgan
