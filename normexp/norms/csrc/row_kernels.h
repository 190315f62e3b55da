// Row kernels for every row-wise variant of normexp.norms (float32 and float64).
//
// One forward and one backward cover LayerNorm, LayerNorm-simple, the detach variants, AdaNorm,
// RMSNorm and pRMSNorm: each row is read once from memory and then re-read from L1, which is
// what makes every variant cost about as much as a single fused LayerNorm.  Large outputs bypass
// the caches (streaming stores, see kStreamBytes).
//
// Row statistic (m = number of leading elements it uses, D = m - unbiased):
//   mean = center ? sum(x[:m]) / m : 0,  v = sum((x[:m] - mean)^2) / D
//   s = sqrt(v + eps)  (inside)   or   sqrt(v) + eps  (outside);   r = 1 / s
//   y = (x - mean) * r,   out = y * w (+ b),  or  C * (1 - k * y) * y  (AdaNorm, k > 0)
// Backward, with gy = dL/dy (the AdaNorm factor C * (1 - k * y) is a constant, as in the paper):
//   dx = r * gy  - [mean path] r * sum(gy) / H  - [var path, j < m] vc * sum(gy * y) * y / D
// where vc = dr/dv-term = r (inside) or 1 / sqrt(v) (outside).  Detaching the mean or the
// variance drops its term; derivation in normexp/norms/fast.py.
//
// This header holds the row loops (plain C++ over raw pointers, helpers in row_vec.h);
// rownorm.cpp wraps them in tensors, threads and the autograd op.
#pragma once

#include "row_vec.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

namespace normexp_rows {

template <typename T>
struct Stat {
  int64_t H, m;
  bool center, inside;
  T divisor, eps, C, k;  // k == 0: no AdaNorm factor
  // Reciprocals, so that each row's chain of dependent steps multiplies instead of dividing (a
  // division's latency is several multiplies'): the raw LayerNorm forward took 0.92-0.94 of the
  // divisions' time (1 and 2 threads, three shapes, medians of 21 rounds in ABBA order).
  T inv_m = T(1) / T(m), inv_div = T(1) / divisor;
};

// The two-pass statistic of one row about `mean` (updated by its rounding, to second order):
// returns sum((x - mean)^2) - sum(x - mean)^2 / m.  Kept out of line: rarely taken.
template <typename T>
__attribute__((noinline)) T refine_row(const T* x, int64_t m, T& mean, T inv_m) {
  const T c = mean;
  const auto [ss, sd] = sum2_row<T>(m, [&](auto io, int64_t j) {
    auto d = io.ld(x + j) - c;
    return std::pair{d * d, d};
  });
  mean = c + sd * inv_m;
  return ss - sd * sd * inv_m;
}

// One row x into y, its (mean, r, vc) into st.  `shift`: the mean of the row before (0 for a
// task's first row), updated to this row's.  Rows go one at a time: with the statistics in one
// pass, pairs of rows whose passes interleave (this function's earlier form, for rows of up to
// 512 bytes) were no faster.  One row at a time against pairs, ABBA, 11 rounds, at 128 floats:
// forward 0.72-0.89 on one thread, 0.99-1.04 on two; fwd+bwd 0.89-0.96 and 0.92-1.02; at 512 and
// 1024 floats (pairs not used there either) 0.96-1.02.
template <typename T>
void forward_row(const T* x, T* y, T* st, const T* w, const T* b, const Stat<T>& c, bool nt, T& shift) {
  const int64_t H = c.H, m = c.m;
  // One pass for both statistics: sums of d = x - shift and d^2, then mean = shift + sum(d) / m and
  // the corrected two-pass formula v = (sum(d^2) - sum(d)^2 / m) / D, exact for any shift.  Without
  // centering (RMS), the plain mean square of x.  Against two passes (mean, then deviations), A/B
  // in ABBA order, 11 rounds: LayerNorm forward 0.80-0.86 of their time on one thread, 0.92-0.97 on
  // two; fwd+bwd 0.93-0.99 on two.  Error against float64 the same or smaller (rows offset by 1e4:
  // 1.3e-4 relative, was 3.3e-4).
  // The rounding error grows by 1 + rho, rho = (shift - mean)^2 / v: the previous row's mean keeps
  // rho small when consecutive rows have similar means; a row with rho > 3 (mean more than sqrt(3)
  // std from the shift) is summed again about its own mean, which is the two-pass formula and costs
  // that row one more pass from L1 (when every row needs it, as when consecutive rows' means
  // alternate 60 std apart, the LayerNorm forward takes 1.11-1.26x as long on two threads,
  // 1.21-1.61x on one).  In real training runs' activations (scripts/bench_refine_rate.py) few rows
  // need it: none at the norm sites of the RT, SST-5, MNIST and PTB presets, 0.02% and 0.28% of all
  // rows of the IWSLT14 and IWSLT15 smoke runs, 2.4% at their worst site.
  // The price: a row's output depends in its last bits on the row before it (which the batch and the
  // thread split decide); for a fixed input and thread count it is fixed.
  const T sh = c.center ? shift : T(0);
  const auto [ss, sd] = sum2_row<T>(m, [&](auto io, int64_t j) {
    auto d = io.ld(x + j) - sh;
    return std::pair{d * d, d};
  });
  T mean = T(0), dev2 = ss;
  if (c.center) {
    mean = sh + sd * c.inv_m;
    dev2 = ss - sd * sd * c.inv_m;
    if (__builtin_expect(dev2 < T(0.25) * ss, 0))  // rho > 3: sum again about the mean just found
      dev2 = refine_row(x, m, mean, c.inv_m);
    shift = mean;
  }
  const T v = std::max(dev2, T(0)) * c.inv_div;
  T r, vc;
  if (c.inside) {
    r = T(1) / std::sqrt(v + c.eps);
    vc = r;
  } else {
    const T s = std::sqrt(v);
    r = T(1) / (s + c.eps);
    vc = s > T(0) ? T(1) / s : T(0);  // a constant row has no variance gradient (0/0 -> 0)
  }
  st[0] = mean;
  st[1] = r;
  st[2] = vc;
  // The variant's form is chosen outside the loop.
  auto emit = [&](auto value) { for_row<T>(H, [&](auto io, int64_t j) { io.out(y + j, value(io, j)); }, nt); };
  auto y_at = [&](auto io, int64_t j) { return (io.ld(x + j) - mean) * r; };
  const T C = c.C, k = c.k;
  if (k != T(0))
    emit([&](auto io, int64_t j) { auto t = y_at(io, j); return C * (T(1) - k * t) * t; });
  else if (w && b)
    emit([&](auto io, int64_t j) { return y_at(io, j) * io.ld(w + j) + io.ld(b + j); });
  else if (w)
    emit([&](auto io, int64_t j) { return y_at(io, j) * io.ld(w + j); });
  else
    emit([&](auto io, int64_t j) { return y_at(io, j); });
}

template <typename T>
struct Grad {
  int64_t H, m;
  T divisor, C, k;
  bool mean_path, var_path;  // false when that statistic is detached (or, for the mean, absent)
  T inv_H = T(1) / T(H), inv_div = T(1) / divisor;  // as in Stat (no measurable change there)
};

// W: multiply by the gain; ADA: AdaNorm factor; SAVED_Y: `s` holds y itself instead of x;
// DW/DB: accumulate this row's gain/bias gradient into dw/db.
template <typename T, bool W, bool ADA, bool SAVED_Y, bool DW, bool DB>
void backward_row(const T* g, const T* s, const T* st, const T* w, T* dx, T* dw, T* db,
                  const Grad<T>& c, bool nt) {
  const int64_t H = c.H, m = c.m;
  const T mean = st[0], r = st[1], vc = st[2], C = c.C, k = c.k;
  auto y_at = [&](auto io, int64_t j) {
    if constexpr (SAVED_Y) return io.ld(s + j);
    else return (io.ld(s + j) - mean) * r;
  };
  // gy from the loaded upstream gradient gv (loaded once per element: after the store to dw, which
  // may alias it, the compiler would load it again; raw backward 0.89-1.03 of that, 0.90-0.97 at 128).
  auto gy_of = [&](auto io, int64_t j, auto gv, auto y) {
    if constexpr (W) gv = gv * io.ld(w + j);
    if constexpr (ADA) gv = gv * (C * (T(1) - k * y));
    return gv;
  };
  auto gy_at = [&](auto io, int64_t j, auto y) { return gy_of(io, j, io.ld(g + j), y); };
  // One pass from memory for both row sums and the gain/bias gradients.
  T sg = 0, sgy = 0;
  if (c.mean_path || c.var_path || DW || DB) {
    std::tie(sg, sgy) = sum2_row<T>(H, [&](auto io, int64_t j) {
      const auto y = y_at(io, j);
      const auto gv = io.ld(g + j);
      const auto gy = gy_of(io, j, gv, y);
      if constexpr (DW) io.st(dw + j, io.ld(dw + j) + gv * y);
      if constexpr (DB) io.st(db + j, io.ld(db + j) + gv);
      return std::pair{gy, gy * y};
    });
  }
  const T a = c.mean_path ? r * sg * c.inv_H : T(0);
  const T bc = c.var_path ? vc * sgy * c.inv_div : T(0);
  for_row<T>(m, [&](auto io, int64_t j) {
    const auto y = y_at(io, j);
    io.out(dx + j, r * gy_at(io, j, y) - a - bc * y);
  }, nt);
  for_row<T>(H - m, [&](auto io, int64_t j0) {  // pRMSNorm: elements outside the statistic
    const int64_t j = j0 + m;
    io.out(dx + j, r * gy_at(io, j, y_at(io, j)) - a);
  }, nt && m % Vec<T>::n == 0);
}

// K consecutive wide rows with a gain whose gradient is wanted (DB: and a bias).  Each row's first
// pass reads it from memory for its two sums alone; then one second pass over the K rows together,
// from cache, writes their dx and adds their gain/bias gradients to dw/db, which are loaded and
// stored once per K rows instead of once per row.  Only for rows of kWideRowBytes and more: there the
// gain and the dw/db scratch rows (three more rows' worth) no longer fit in L1 (32 KiB on our EPYC)
// beside the row, and their traffic to L2 is what the gain's gradient costs.  A/B against one row
// at a time (ABBA, 11 rounds, 1 and 2 threads), fwd+bwd of LayerNorm, RMSNorm and pRMSNorm:
// 0.85-0.94 at 128x25088 and 128x12544 (the MNIST CNN's norm sites), 0.83-0.94 at 2048x2048 and
// 1024x4096.  Narrower rows keep one row at a time: there pairs took 1.05-1.34 of its backward (256
// to 1024 floats; rows in flight side by side cost more than the scratch rows' L1 traffic).  Four
// rows at a time: 1.04-1.56 there, and at 2048 and wider 0.74-1.11 of the backward against
// 0.79-1.08 for pairs.
constexpr int64_t kWideRowBytes = 8192;
template <typename T, int K, bool DB>
void backward_gain_rows(const T* g, const T* x, const T* st, const T* w, T* dx, T* dw, T* db,
                        const Grad<T>& c, bool nt) {
  const int64_t H = c.H, m = c.m;
  T mean[K], r[K], a[K], bc[K];
  for (int k = 0; k < K; ++k) {
    const T *gk = g + k * H, *xk = x + k * H;
    const T mk = st[3 * k], rk = st[3 * k + 1];
    const auto [sg, sgy] = sum2_row<T>(H, [&](auto io, int64_t j) {
      const auto y = (io.ld(xk + j) - mk) * rk;
      const auto gy = io.ld(gk + j) * io.ld(w + j);
      return std::pair{gy, gy * y};
    });
    mean[k] = mk;
    r[k] = rk;
    a[k] = c.mean_path ? rk * sg * c.inv_H : T(0);
    bc[k] = c.var_path ? st[3 * k + 2] * sgy * c.inv_div : T(0);
  }
  // Columns [lo, lo + n); var_term: inside the statistic (pRMSNorm's other columns have no variance term).
  auto second = [&](int64_t lo, int64_t n, bool var_term, bool stream) {
    for_row<T>(n, [&](auto io, int64_t j0) {
      const int64_t j = lo + j0;
      const auto wv = io.ld(w + j);
      auto dwv = io.ld(dw + j);
      auto dbv = DB ? io.ld(db + j) : wv;
      for (int k = 0; k < K; ++k) {
        const auto y = (io.ld(x + k * H + j) - mean[k]) * r[k];
        const auto gv = io.ld(g + k * H + j);
        io.out(dx + k * H + j, r[k] * (gv * wv) - a[k] - (var_term ? bc[k] : T(0)) * y);
        dwv += gv * y;
        if constexpr (DB) dbv += gv;
      }
      io.st(dw + j, dwv);
      if constexpr (DB) io.st(db + j, dbv);
    }, stream);
  };
  second(0, m, true, nt);
  second(m, H - m, false, nt && m % Vec<T>::n == 0);
}

}  // namespace normexp_rows
