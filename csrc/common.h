// Helpers shared by the CPU and CUDA kernels: layout choice, argument checks
// and loss-mode parsing, so both backends agree on every rule.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <string>

namespace fastgan {

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
  TORCH_CHECK(x.dim() == 4, "fastgan: ", name, " must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "fastgan: ", name, " must be float32/float16/bfloat16/float64, got ", x.scalar_type());
}

// A per-channel vector (statistics, weight, bias) of C values on x's device.
inline void check_channel_vector(const at::Tensor& v, const at::Tensor& x, const char* name) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == x.size(1), "fastgan: ", name, " must have shape (",
              x.size(1), ",), got ", v.sizes());
  TORCH_CHECK(v.device() == x.device(), "fastgan: ", name, " is on ", v.device(),
              " but the input is on ", x.device());
  TORCH_CHECK(v.scalar_type() == stat_dtype(x), "fastgan: ", name, " must be ", stat_dtype(x),
              ", got ", v.scalar_type());
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
              " must be a floating-point tensor, got ", t.scalar_type());
  TORCH_CHECK(t.numel() > 0, "fastgan: ", name, " is empty");
}

}  // namespace fastgan
