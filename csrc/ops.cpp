// Every fastgan operator's schema, and nothing else. CPU and CUDA kernels
// register against these names in csrc/cpu and csrc/cuda, the autograd formulas in
// csrc/autograd.cpp; Python adds register_fake in fastgan/ops. The semantics of each
// op are written down in docs/operators.md.
#include <torch/library.h>

TORCH_LIBRARY(fastgan, m) {
  // Per-channel mean and biased variance over (N, H, W) of a 4-D input.
  m.def("bn_stats(Tensor input) -> (Tensor mean, Tensor var)");
  // out = act(weight * (input - mean) * invstd + bias); act = LeakyReLU(slope).
  m.def(
      "bn_act_apply(Tensor input, Tensor mean, Tensor invstd, Tensor? weight, "
      "Tensor? bias, float negative_slope, bool save_output) -> Tensor");
  // Training forward: batch statistics, then the fused normalize pass. invstd = 1 / sqrt(var +
  // eps), which the statistics pass computes anyway: the backward reads it instead of recomputing.
  m.def(
      "bn_act_train(Tensor input, Tensor? weight, Tensor? bias, float eps, "
      "float negative_slope, bool save_output) "
      "-> (Tensor out, Tensor mean, Tensor var, Tensor invstd)");
  // Backward, pass 1: per-channel sums of dz and dz * xhat (dz = grad through the activation).
  m.def(
      "bn_act_backward_reduce(Tensor grad_out, Tensor saved, Tensor mean, Tensor invstd, "
      "Tensor? weight, Tensor? bias, float negative_slope, bool saved_is_output) "
      "-> (Tensor sum_dz, Tensor sum_dz_xhat)");
  // Backward, pass 2: grad_input = (dz - mean_dz - xhat * mean_dz_xhat) * invstd * weight.
  m.def(
      "bn_act_backward_input(Tensor grad_out, Tensor saved, Tensor mean, Tensor invstd, "
      "Tensor? weight, Tensor? bias, Tensor mean_dz, Tensor mean_dz_xhat, "
      "float negative_slope, bool saved_is_output) -> Tensor");
  // GAN losses (mode: vanilla | lsgan | hinge | wgan); each returns d loss / d logits too.
  m.def(
      "gan_d_loss(Tensor real_logits, Tensor fake_logits, str mode, float target_real, "
      "float target_fake) -> (Tensor loss, Tensor grad_real, Tensor grad_fake)");
  m.def(
      "gan_g_loss(Tensor fake_logits, str mode, float target_real) "
      "-> (Tensor loss, Tensor grad_fake)");
}
