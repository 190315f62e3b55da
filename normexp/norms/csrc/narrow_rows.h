// The backward of narrow rows with a gain whose gradient is wanted (LayerNorm and RMSNorm with a
// gain: float32, H = 64 or 128, the statistic over the whole row), on CPUs with AVX-512.
//
// Why a kernel of its own: the general one (backward_row) adds each row's gain and bias gradients
// into a scratch row, a load and a store per element per row for each of dw and db, which at these
// widths is as much work as the row's own.  Here a row is 4 or 8 64-byte vectors, so the gain and
// the block's dw/db sums stay in registers (3 x H/16 of the 32 zmm) across the block's rows, and
// the width is a compile-time constant, so the row loops unroll completely.  A/B against the
// general kernel (ABBA, 11 rounds, 1 and 2 threads): backward 0.83-0.94 of its time, fwd+bwd
// 0.89-0.97, at 32768x128 and 65536x64.
#pragma once

#include "row_kernels.h"

#ifdef __AVX512F__
#include <immintrin.h>

namespace normexp_rows {

// Widths the kernel covers: 64-byte vectors per row.
inline int narrow_vectors(int64_t H, int64_t m) { return H == m && (H == 64 || H == 128) ? int(H / 16) : 0; }

// Rows [0, n) of g and x (the saved input) with their statistics st (mean, r, vc) into dx; adds
// the rows' gain (and, DB, bias) gradients to the double sums pw / pb.  Prefetches `ahead` rows
// ahead, up to row lim.
template <int NV, bool DB>
void backward_narrow(const float* g, const float* x, const float* st, const float* w, float* dx,
                     double* pw, double* pb, int64_t n, int64_t lim, int64_t ahead, const Grad<float>& c,
                     bool nt) {
  typedef float Z __attribute__((vector_size(64)));
  typedef float ZM __attribute__((vector_size(64), aligned(4), may_alias));
  constexpr int64_t H = NV * 16;
  auto ld = [](const float* p) { return *reinterpret_cast<const ZM*>(p); };
  auto hsum16 = [](Z v) {
    const typename Vec<float>::V h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                                     __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    return hsum<float>(h);
  };
  const bool stream = nt && reinterpret_cast<uintptr_t>(dx) % 64 == 0;
  const float inv_H = c.inv_H, inv_div = c.inv_div;
  const bool mean_path = c.mean_path, var_path = c.var_path;
  Z aw[NV] = {}, ab[NV] = {}, wv[NV];
  for (int u = 0; u < NV; ++u) wv[u] = ld(w + 16 * u);
  for (int64_t i = 0; i < n; ++i) {
    prefetch_ahead(i, ahead, lim, H, g, x);
    const float* gi = g + i * H;
    const float* xi = x + i * H;
    float* di = dx + i * H;
    const float mean = st[3 * i], r = st[3 * i + 1], vc = st[3 * i + 2];
    Z s1[2] = {}, s2[2] = {};
    for (int u = 0; u < NV; ++u) {
      const Z gv = ld(gi + 16 * u), y = (ld(xi + 16 * u) - mean) * r, gy = gv * wv[u];
      aw[u] += gv * y;
      if constexpr (DB) ab[u] += gv;
      s1[u & 1] += gy;
      s2[u & 1] += gy * y;
    }
    const float a = mean_path ? r * hsum16(s1[0] + s1[1]) * inv_H : 0.f;
    const float bc = var_path ? vc * hsum16(s2[0] + s2[1]) * inv_div : 0.f;
    for (int u = 0; u < NV; ++u) {
      const Z y = (ld(xi + 16 * u) - mean) * r;
      const Z d = r * (ld(gi + 16 * u) * wv[u]) - a - bc * y;
      if (stream) _mm512_stream_ps(di + 16 * u, (__m512)d);
      else *reinterpret_cast<ZM*>(di + 16 * u) = d;
    }
  }
  for (int u = 0; u < NV; ++u)
    for (int l = 0; l < 16; ++l) {
      pw[16 * u + l] += aw[u][l];
      if constexpr (DB) pb[16 * u + l] += ab[u][l];
    }
}

}  // namespace normexp_rows
#endif
