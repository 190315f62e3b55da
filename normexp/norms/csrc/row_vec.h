// Vector and memory helpers for the row kernels (row_kernels.h): 32-byte vectors written once as
// generic lambdas over a row, horizontal and row sums, aligned scratch rows, software
// prefetch and streaming stores.  Plain C++ over raw pointers.
#pragma once

#include <algorithm>
#include <cstdint>
#ifdef __AVX__
#include <immintrin.h>
#endif
#include <type_traits>
#include <utility>
#include <vector>

namespace normexp_rows {

// Rows per task so that a task touches about as many elements as ATen's own grain.
inline int64_t row_grain(int64_t H) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(H, 1)); }

// Explicit 32-byte vectors (GCC/Clang vector extensions): the auto-vectorizer handled some
// template instances of these loops and silently left others scalar (3x slower).  Without AVX the
// compiler lowers each vector to two SSE registers.
// `type` holds values; `mem` is the same vector at element alignment, for loads and stores.
template <typename T> struct VecOf;
template <> struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
  typedef float mem __attribute__((vector_size(32), aligned(4), may_alias));
};
template <> struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
  typedef double mem __attribute__((vector_size(32), aligned(8), may_alias));
};

// n zeroed elements from a 64-byte boundary, as torch's tensors start, so that no vector
// straddles two cache lines.  For the gain/bias block sums, written by one row and read back by the
// next: from malloc (16-byte aligned) they sometimes landed 16 bytes off a 32-byte boundary, and
// store-to-load forwarding from line-split stores made the backward at 32768x128 2.3-2.6x slower
// (5.5-5.8 vs 2.1-2.4 ms, one thread) in whichever processes malloc placed them so.
template <typename T>
class AlignedRow {
 public:
  explicit AlignedRow(int64_t n) : n_(n), store_(n + 64 / sizeof(T)) {
    data_ = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(store_.data()) + 63) & ~uintptr_t(63));
  }
  T* data() { return data_; }
  T operator[](int64_t j) const { return data_[j]; }
  void zero() { std::fill(data_, data_ + n_, T(0)); }

 private:
  int64_t n_;
  std::vector<T> store_;
  T* data_;
};

// Loaders for a vector at p (Vec) or one element (Sca): row code is written once as a generic
// lambda f(io, j) and runs vector-wide over the row and element-wise over its tail.
template <typename T>
struct Vec {
  using V = typename VecOf<T>::type;
  static constexpr int64_t n = 32 / sizeof(T);
  using M = typename VecOf<T>::mem;
  static V ld(const T* p) { return *reinterpret_cast<const M*>(p); }
  static void st(T* p, V v) { *reinterpret_cast<M*>(p) = v; }
  bool nt = false;  // stream (non-temporal) stores for the output: p is 32-byte aligned then
  void out(T* p, V v) const {
#ifdef __AVX__
    if (nt) {
      if constexpr (sizeof(T) == 4) _mm256_stream_ps(reinterpret_cast<float*>(p), (__m256)v);
      else _mm256_stream_pd(reinterpret_cast<double*>(p), (__m256d)v);
      return;
    }
#endif
    st(p, v);
  }
};
template <typename T>
struct Sca {
  static T ld(const T* p) { return *p; }
  static void st(T* p, T v) { *p = v; }
  void out(T* p, T v) const { *p = v; }
};

template <typename T, typename F>
inline void for_row(int64_t n, F f, bool nt = false) {
  constexpr int64_t N = Vec<T>::n;
  int64_t j = 0;
  const Vec<T> v{nt};
  for (; j + N <= n; j += N) f(v, j);
  for (; j < n; ++j) f(Sca<T>{}, j);
}

// Horizontal sum as a tree (3 dependent adds for 8 floats, not 8 in a chain): it sits on each
// row's critical path, between a row pass and the statistic the next pass needs.  A/B of the raw
// kernels (1 and 2 threads, 9 rounds): LayerNorm and RMSNorm fwd+bwd 0.90-1.01 of the chain's time.
template <typename T>
inline T hsum(typename Vec<T>::V v) {
  if constexpr (Vec<T>::n == 8) {
    typedef T H4 __attribute__((vector_size(4 * sizeof(T))));
    typedef T H2 __attribute__((vector_size(2 * sizeof(T))));
    const H4 a = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    const H2 b = __builtin_shufflevector(a, a, 0, 1) + __builtin_shufflevector(a, a, 2, 3);
    return b[0] + b[1];
  } else {
    typedef T H2 __attribute__((vector_size(2 * sizeof(T))));
    const H2 b = __builtin_shufflevector(v, v, 0, 1) + __builtin_shufflevector(v, v, 2, 3);
    return b[0] + b[1];
  }
}

// Sums of f(io, j).first and .second over a row, with 4 independent vector accumulators per sum:
// with a single accumulator each sum would be a chain of dependent adds, one add latency per vector.
template <typename T, typename F>
inline std::pair<T, T> sum2_row(int64_t n, F f) {
  using V = typename Vec<T>::V;
  constexpr int64_t N = Vec<T>::n;
  V a[4] = {}, b[4] = {};
  int64_t j = 0;
  for (; j + 4 * N <= n; j += 4 * N)
    for (int u = 0; u < 4; ++u) {
      auto [p, q] = f(Vec<T>{}, j + u * N);
      a[u] += p;
      b[u] += q;
    }
  for (; j + N <= n; j += N) {
    auto [p, q] = f(Vec<T>{}, j);
    a[0] += p;
    b[0] += q;
  }
  T s = hsum<T>((a[0] + a[1]) + (a[2] + a[3])), t = hsum<T>((b[0] + b[1]) + (b[2] + b[3]));
  for (; j < n; ++j) {
    auto [p, q] = f(Sca<T>{}, j);
    s += p;
    t += q;
  }
  return {s, t};
}

// Software prefetch of the rows ahead.  The hardware prefetcher follows a stream only a few lines
// ahead: while the core runs a row's in-L1 passes the memory idles, and the next row's first pass
// then waits on it.  The forward reads one stream and prefetches rows of up to 4 KiB, 8 KiB ahead;
// the backward reads two and prefetches only rows of up to 1 KiB, 2 KiB ahead.  A/B of the raw
// LayerNorm kernels (EPYC, 1 and 2 threads, 11 interleaved rounds, two runs), forward+backward
// against the earlier rule (both: rows up to 2 KiB, 2 KiB ahead): 0.89-0.98 at 512 floats,
// 0.88-0.96 at 1024, 0.98-1.05 at 128.  Prefetching in the backward at 512 floats made it 5-27%
// slower; with no prefetch at all, 128-float rows were 8-23% slower.
template <typename T>
inline void prefetch_row(const T* p, int64_t H) {
  for (int64_t j = 0; j < H; j += 64 / int64_t(sizeof(T))) __builtin_prefetch(p + j, 0, 3);
}
// How many rows ahead to prefetch (0: none): rows of up to max_row bytes, `distance` bytes ahead.
inline int64_t rows_ahead(int64_t H, int64_t elem, int64_t max_row, int64_t distance) {
  const int64_t bytes = H * elem;
  return bytes > max_row ? 0 : std::max<int64_t>(1, distance / std::max<int64_t>(bytes, 1));
}
inline int64_t forward_rows_ahead(int64_t H, int64_t elem) { return rows_ahead(H, elem, 4096, 8192); }
inline int64_t backward_rows_ahead(int64_t H, int64_t elem) { return rows_ahead(H, elem, 1024, 2048); }
// Before row i of a loop ending at `end`: prefetch row i + ahead of each (rows, H) array given.
template <typename T, typename... More>
inline void prefetch_ahead(int64_t i, int64_t ahead, int64_t end, int64_t H, const T* a, More... more) {
  if (ahead == 0 || i + ahead >= end) return;
  prefetch_row(a + (i + ahead) * H, H);
  (prefetch_row(more + (i + ahead) * H, H), ...);
}

// Outputs of at least this many bytes are written with streaming (non-temporal) stores, which skip
// reading each output cache line from memory before overwriting it: a third of the traffic of a
// forward (x in; y's lines read, then written) and a quarter of a backward.  Measured on a 32 MiB-L3
// EPYC, one thread: the forward+backward of LayerNorm 20-25% faster at 16 MiB, and a forward
// followed by a matmul that reads y no slower from 4 MiB up (+3% at 2 MiB, where y would still be
// in cache: hence the bound).
constexpr int64_t kStreamBytes = int64_t(4) << 20;

inline bool stream_output(const void* p, int64_t R, int64_t H, int64_t elem) {
#ifdef __AVX__  // when every row starts 32-byte aligned, as the vector stores must be
  return reinterpret_cast<uintptr_t>(p) % 32 == 0 && (H * elem) % 32 == 0 && R * H * elem >= kStreamBytes;
#else
  return false;
#endif
}
// Streaming stores are weakly ordered: each task fences them before the results are handed over.
inline void fence(bool nt) {
#ifdef __AVX__
  if (nt) _mm_sfence();
#endif
}

}  // namespace normexp_rows
