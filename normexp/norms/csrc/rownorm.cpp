// The fused CPU op of normexp.norms: the row loops of row_kernels.h over (rows, H) tensors,
// split across threads, with the gain/bias gradient reductions and the autograd node.
#include "narrow_rows.h"
#include "row_kernels.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

namespace {

using at::Tensor;
using namespace normexp_rows;

void check_rows(const Tensor& t, const Tensor& x, const char* what) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "float32/float64 only");
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == x.scalar_type(),
              what, " must be a contiguous CPU tensor of the input's dtype");
}

std::tuple<Tensor, Tensor> rownorm_forward(const Tensor& x, const std::optional<Tensor>& weight,
                                           const std::optional<Tensor>& bias, int64_t m, bool center,
                                           double divisor, double eps, bool inside, double C,
                                           double k) {
  TORCH_CHECK(x.dim() == 2, "x must be (rows, H)");
  check_rows(x, x, "x");
  const int64_t R = x.size(0), H = x.size(1);
  TORCH_CHECK(m >= 1 && m <= H, "statistic length out of range");
  const bool has_w = weight.has_value() && weight->defined();
  const bool has_b = bias.has_value() && bias->defined();
  if (has_w) check_rows(*weight, x, "weight");
  if (has_b) check_rows(*bias, x, "bias");
  Tensor y = at::empty_like(x);
  Tensor st = at::empty({R, 3}, x.options());
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const Stat<T> c{H, m, center, inside, T(divisor), T(eps), T(C), T(k)};
    const T* X = x.data_ptr<T>();
    const T* Wp = has_w ? weight->data_ptr<T>() : nullptr;
    const T* Bp = has_b ? bias->data_ptr<T>() : nullptr;
    T* Y = y.data_ptr<T>();
    T* S = st.data_ptr<T>();
    const bool nt = stream_output(Y, R, H, sizeof(T));
    at::parallel_for(0, R, row_grain(H), [&](int64_t r0, int64_t r1) {
      const int64_t ahead = forward_rows_ahead(H, sizeof(T));
      T shift = 0;
      for (int64_t i = r0; i < r1; ++i) {
        prefetch_ahead(i, ahead, r1, H, X);
        forward_row<T>(X + i * H, Y + i * H, S + 3 * i, Wp, Bp, c, nt, shift);
      }
      fence(nt);
    });
  };
  if (x.scalar_type() == at::kFloat) run(float(0)); else run(double(0));
  return {y, st};
}

template <typename T, bool W, bool ADA, bool SAVED_Y, bool DW = false, bool DB = false>
void backward_rows(const T* G, const T* Sv, const T* St, const T* Wp, T* DX, T* dw_out, T* db_out,
                   int64_t R, const Grad<T>& c) {
  const int64_t H = c.H;
  const bool nt = stream_output(DX, R, H, sizeof(T));
  if (!DW && !DB) {
    at::parallel_for(0, R, row_grain(H), [&](int64_t r0, int64_t r1) {
      const int64_t ahead = backward_rows_ahead(H, sizeof(T));
      for (int64_t i = r0; i < r1; ++i) {
        prefetch_ahead(i, ahead, r1, H, G, Sv);
        backward_row<T, W, ADA, SAVED_Y, false, false>(G + i * H, Sv + i * H, St + 3 * i, Wp,
                                                        DX + i * H, nullptr, nullptr, c, nt);
      }
      fence(nt);
    });
    return;
  }
  // Gain/bias gradients: a fixed partition into chunks (deterministic for a given thread count),
  // each summing rows into a float block that is flushed to double every kBlock rows, so long
  // sums over many rows stay accurate at float speed.  The chunks' double sums are added in order
  // and rounded once into dw_out / db_out (null: computed, not wanted).
  constexpr int64_t kBlock = 64;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), R));
  std::vector<double> part_w(DW ? chunks * H : 0, 0.0), part_b(DB ? chunks * H : 0, 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    AlignedRow<T> bw(DW ? H : 0), bb(DB ? H : 0);
    const int64_t ahead = backward_rows_ahead(H, sizeof(T));
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t lo = R * ch / chunks, hi = R * (ch + 1) / chunks;
      for (int64_t i0 = lo; i0 < hi; i0 += kBlock) {
        const int64_t i1 = std::min(hi, i0 + kBlock);
#ifdef __AVX512F__
        if constexpr (std::is_same_v<T, float> && W && DW && !ADA && !SAVED_Y) {
          if (const int nv = narrow_vectors(H, c.m)) {  // gain sums in registers (narrow_rows.h)
            auto run = [&](auto NV) {
              backward_narrow<NV(), DB>(G + i0 * H, Sv + i0 * H, St + 3 * i0, Wp, DX + i0 * H, &part_w[ch * H],
                                        DB ? &part_b[ch * H] : nullptr, i1 - i0, hi - i0, ahead, c, nt);
            };
            if (nv == 8) run(std::integral_constant<int, 8>{}); else run(std::integral_constant<int, 4>{});
            continue;
          }
        }
#endif
        bw.zero();
        bb.zero();
        int64_t i = i0;
        if constexpr (W && DW && !ADA && !SAVED_Y)  // wide rows: two at a time (row_kernels.h)
          if (H * int64_t(sizeof(T)) >= kWideRowBytes)
            for (; i + 2 <= i1; i += 2)
              backward_gain_rows<T, 2, DB>(G + i * H, Sv + i * H, St + 3 * i, Wp, DX + i * H, bw.data(), bb.data(),
                                           c, nt);
        for (; i < i1; ++i) {
          prefetch_ahead(i, ahead, hi, H, G, Sv);
          backward_row<T, W, ADA, SAVED_Y, DW, DB>(G + i * H, Sv + i * H, St + 3 * i, Wp,
                                                    DX + i * H, bw.data(), bb.data(), c, nt);
        }
        for (int64_t j = 0; j < (DW ? H : 0); ++j) part_w[ch * H + j] += bw[j];
        for (int64_t j = 0; j < (DB ? H : 0); ++j) part_b[ch * H + j] += bb[j];
      }
    }
    fence(nt);
  });
  for (int64_t j = 0; j < H; ++j) {
    double sw = 0, sb = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) {
      if (DW) sw += part_w[ch * H + j];
      if (DB) sb += part_b[ch * H + j];
    }
    if (DW && dw_out) dw_out[j] = T(sw);
    if (DB && db_out) db_out[j] = T(sb);
  }
}

std::tuple<Tensor, Tensor, Tensor> rownorm_backward(
    const Tensor& grad, const Tensor& saved, const Tensor& st, const std::optional<Tensor>& weight,
    bool saved_is_y, int64_t m, double divisor, bool mean_path, bool var_path, double C, double k,
    bool weight_grad, bool bias_grad) {
  TORCH_CHECK(grad.dim() == 2, "grad must be (rows, H)");
  check_rows(grad, grad, "grad");
  check_rows(saved, grad, "saved");
  check_rows(st, grad, "stats");
  const int64_t R = grad.size(0), H = grad.size(1);
  TORCH_CHECK(saved.sizes() == grad.sizes() && st.size(0) == R, "shape mismatch");
  const bool has_w = weight.has_value() && weight->defined();
  if (has_w) check_rows(*weight, grad, "weight");
  const bool ada = k != 0.0;
  TORCH_CHECK(!(has_w && ada) && !(saved_is_y && (has_w || ada)), "unsupported combination");
  TORCH_CHECK((!weight_grad && !bias_grad) || has_w, "gain/bias gradients need a gain");
  Tensor dx = at::empty_like(grad);
  // Undefined when not asked for.  Written directly in the input's dtype: double buffers and their
  // conversion took 22 of the 96 us of C++ time per forward+backward at 4x512 (torch profiler).
  Tensor dw = weight_grad ? at::empty({H}, grad.options()) : Tensor();
  Tensor db = bias_grad ? at::empty({H}, grad.options()) : Tensor();
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const Grad<T> c{H, m, T(divisor), T(C), T(k), mean_path, var_path};
    const T* G = grad.data_ptr<T>();
    const T* S = saved.data_ptr<T>();
    const T* ST = st.data_ptr<T>();
    const T* Wp = has_w ? weight->data_ptr<T>() : nullptr;
    T* DX = dx.data_ptr<T>();
    T* DW = weight_grad ? dw.data_ptr<T>() : nullptr;
    T* DB = bias_grad ? db.data_ptr<T>() : nullptr;
    // A bias gradient without a gain gradient (frozen gain) computes the gain's and drops it.
    if (has_w && bias_grad)
      backward_rows<T, true, false, false, true, true>(G, S, ST, Wp, DX, DW, DB, R, c);
    else if (has_w && weight_grad)
      backward_rows<T, true, false, false, true, false>(G, S, ST, Wp, DX, DW, DB, R, c);
    else if (has_w)
      backward_rows<T, true, false, false>(G, S, ST, Wp, DX, DW, DB, R, c);
    else if (ada)
      backward_rows<T, false, true, false>(G, S, ST, Wp, DX, DW, DB, R, c);
    else if (saved_is_y)
      backward_rows<T, false, false, true>(G, S, ST, Wp, DX, DW, DB, R, c);
    else
      backward_rows<T, false, false, false>(G, S, ST, Wp, DX, DW, DB, R, c);
  };
  if (grad.scalar_type() == at::kFloat) run(float(0)); else run(double(0));
  return {dx, dw, db};
}

// DetachNorm's backward (both statistics detached, no gain): dx = r * g, one streaming pass.  With
// a broadcast torch mul (g * r[:, None]) instead, DetachNorm's forward+backward took 0.69-0.77 of
// F.layer_norm's at 32768x128; with this, 0.47-0.55.
Tensor scale_rows_backward(const Tensor& grad, const Tensor& st) {
  check_rows(grad, grad, "grad");
  check_rows(st, grad, "stats");
  const int64_t R = grad.size(0), H = grad.size(1);
  Tensor dx = at::empty_like(grad);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T* G = grad.data_ptr<T>();
    const T* S = st.data_ptr<T>();
    T* D = dx.data_ptr<T>();
    const bool nt = stream_output(D, R, H, sizeof(T));
    at::parallel_for(0, R, row_grain(H), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        const T r = S[3 * i + 1];
        const T* g = G + i * H;
        T* d = D + i * H;
        for_row<T>(H, [&](auto io, int64_t j) { io.out(d + j, io.ld(g + j) * r); }, nt);
      }
      fence(nt);
    });
  };
  if (grad.scalar_type() == at::kFloat) run(float(0)); else run(double(0));
  return dx;
}

// x as (rows, H), contiguous: x itself when it already is (each reshape/view is a dispatcher call,
// which per-call overhead at small inputs is made of).
Tensor rows_of(const Tensor& x, int64_t H) {
  const Tensor c = x.contiguous();
  return c.dim() == 2 ? c : c.view({-1, H});
}
// t, shaped (rows, H), back in the shape `like` has.
Tensor shaped_as(const Tensor& t, const Tensor& like) { return like.dim() == 2 ? t : t.view(like.sizes()); }
// An optional gain or bias, contiguous; undefined when absent.
Tensor contiguous_or_none(const std::optional<Tensor>& t) {
  return t.has_value() && t->defined() ? t->contiguous() : Tensor();
}

// The differentiable op: forward and hand-derived backward in one C++ autograd node.  The Python
// autograd.Function it replaces cost 37 us more per forward+backward of a 4x512 input; in a tiny
// fairseq Transformer's step (12 norm sites, torch profiler) the norms' share fell from 7.4 to 3.4 ms.
// mean_path / var_path: whether the mean / variance is differentiated through (false: detached or,
// for the mean, absent).  Once differentiable: a second-order gradient raises.
struct RowNormFn : public torch::autograd::Function<RowNormFn> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x,
                        const std::optional<Tensor>& weight, const std::optional<Tensor>& bias,
                        int64_t m, bool center, double divisor, double eps, bool inside, double C,
                        double k, bool mean_path, bool var_path) {
    const Tensor x2 = rows_of(x, x.size(-1));
    const Tensor w = contiguous_or_none(weight), b = contiguous_or_none(bias);
    const bool has_w = w.defined(), has_b = b.defined();
    auto [y, st] = rownorm_forward(x2, w, b, m, center, divisor, eps, inside, C, k);
    Tensor out = shaped_as(y, x);
    // Save the least that the backward needs: DetachNorm needs only 1/s; variants whose output is
    // y itself save y (the next layer usually keeps it anyway); the rest save x.
    const bool only_scale = !mean_path && !var_path && k == 0.0 && !has_w;
    const bool saves_y = !only_scale && k == 0.0 && !has_w && !has_b;
    auto& d = ctx->saved_data;
    d["m"] = m;
    d["divisor"] = divisor;
    d["C"] = C;
    d["k"] = k;
    d["mean_path"] = mean_path;
    d["var_path"] = var_path;
    d["saves_y"] = saves_y;
    d["only_scale"] = only_scale;
    d["has_w"] = has_w;
    d["has_b"] = has_b;
    if (only_scale) ctx->save_for_backward({st});
    else ctx->save_for_backward({st, saves_y ? out : x2, w});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(!torch::autograd::GradMode::is_enabled(),
                "normexp.norms: the fused CPU kernel is once differentiable; for higher-order gradients "
                "call normexp.norms.reference.normalize (the pure-PyTorch path)");
    const Tensor& grad = grads[0];
    const int64_t H = grad.size(-1);
    const Tensor g2 = rows_of(grad, H);
    auto& d = ctx->saved_data;
    const auto saved = ctx->get_saved_variables();
    const bool has_w = d["has_w"].toBool(), has_b = d["has_b"].toBool();
    // Gradient edges: x, then the gain and the bias when given.
    const bool need_x = ctx->needs_input_grad(0);
    const bool need_w = has_w && ctx->needs_input_grad(1);
    const bool need_b = has_b && ctx->needs_input_grad(has_w ? 2 : 1);
    Tensor dx, dw, db;
    if (d["only_scale"].toBool()) {  // DetachNorm: dx = r * g
      if (need_x) dx = shaped_as(scale_rows_backward(g2, saved[0]), grad);
    } else {
      std::tie(dx, dw, db) = rownorm_backward(
          g2, rows_of(saved[1], H), saved[0], saved[2], d["saves_y"].toBool(), d["m"].toInt(),
          d["divisor"].toDouble(), d["mean_path"].toBool(), d["var_path"].toBool(), d["C"].toDouble(),
          d["k"].toDouble(), need_w, need_b);
      dx = shaped_as(dx, grad);
    }
    return {need_x ? dx : Tensor(), need_w ? dw : Tensor(), need_b ? db : Tensor(),
            Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor rownorm(const Tensor& x, const std::optional<Tensor>& weight, const std::optional<Tensor>& bias,
               int64_t m, bool center, double divisor, double eps, bool inside, double C, double k,
               bool mean_path, bool var_path) {
  auto wants_grad = [](const std::optional<Tensor>& t) { return t.has_value() && t->defined() && t->requires_grad(); };
  if (torch::autograd::GradMode::is_enabled() && (x.requires_grad() || wants_grad(weight) || wants_grad(bias)))
    return RowNormFn::apply(x, weight, bias, m, center, divisor, eps, inside, C, k, mean_path, var_path);
  // Nothing to differentiate (evaluation, no_grad, inference_mode): the forward kernel alone, without
  // an autograd node and its saved state.
  auto [y, st] = rownorm_forward(rows_of(x, x.size(-1)), contiguous_or_none(weight), contiguous_or_none(bias), m,
                                 center, divisor, eps, inside, C, k);
  return shaped_as(y, x);
}

// The forward and backward kernels as two ops of their own, for torch.compile: with fake (meta)
// implementations and a Python autograd formula registered in fast.py they trace into a graph,
// which the one-node `rownorm` above (autograd inside C++) cannot.  Eager calls keep `rownorm`.  The forward
// takes `rownorm`'s arguments (mean_path and var_path unused) so that the autograd formula sees them.
std::tuple<Tensor, Tensor> rownorm_fwd(const Tensor& x, const std::optional<Tensor>& weight,
                                       const std::optional<Tensor>& bias, int64_t m, bool center, double divisor,
                                       double eps, bool inside, double C, double k, bool, bool) {
  auto [y, st] = rownorm_forward(rows_of(x, x.size(-1)), contiguous_or_none(weight), contiguous_or_none(bias), m,
                                 center, divisor, eps, inside, C, k);
  return {shaped_as(y, x), st};
}

// dx, and the gain/bias gradients when a gain/bias is given (else empty tensors: an op returns no None).
std::tuple<Tensor, Tensor, Tensor> rownorm_bwd(const Tensor& grad, const Tensor& x, const Tensor& st,
                                               const std::optional<Tensor>& weight, bool has_bias, int64_t m,
                                               double divisor, bool mean_path, bool var_path, double C, double k) {
  const int64_t H = grad.size(-1);
  const Tensor w = contiguous_or_none(weight);
  Tensor dx, dw, db;
  if (!mean_path && !var_path && k == 0.0 && !w.defined())
    dx = scale_rows_backward(rows_of(grad, H), st);
  else
    std::tie(dx, dw, db) = rownorm_backward(rows_of(grad, H), rows_of(x, H), st, w, false, m, divisor, mean_path,
                                            var_path, C, k, w.defined(), w.defined() && has_bias);
  if (!dw.defined()) dw = at::empty({0}, grad.options());
  if (!db.defined()) db = at::empty({0}, grad.options());
  return {shaped_as(dx, grad), dw, db};
}

}  // namespace

TORCH_LIBRARY(normexp_norms, lib) {
  lib.def("rownorm(Tensor x, Tensor? weight, Tensor? bias, int m, bool center, float divisor, float eps, "
          "bool inside, float C, float k, bool mean_path, bool var_path) -> Tensor");
  // Autograd is handled inside (RowNormFn), so one kernel serves every dispatch key.
  lib.impl("rownorm", c10::DispatchKey::CompositeImplicitAutograd, TORCH_FN(rownorm));
  lib.def("rownorm_fwd(Tensor x, Tensor? weight, Tensor? bias, int m, bool center, float divisor, float eps, "
          "bool inside, float C, float k, bool mean_path, bool var_path) -> (Tensor, Tensor)");
  lib.impl("rownorm_fwd", c10::DispatchKey::CPU, TORCH_FN(rownorm_fwd));
  lib.def("rownorm_bwd(Tensor grad, Tensor x, Tensor stats, Tensor? weight, bool has_bias, int m, float divisor, "
          "bool mean_path, bool var_path, float C, float k) -> (Tensor, Tensor, Tensor)");
  lib.impl("rownorm_bwd", c10::DispatchKey::CPU, TORCH_FN(rownorm_bwd));
}
