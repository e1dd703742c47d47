// bfloat16 x bfloat16 -> float32 matrix products for jaxcnn's mixed precision (layers.mixed_matmul), as an XLA
// FFI target. Built at install time by setup.py (optional: without a C++ compiler the XLA path runs).
//
// C[b] = op(A[b]) @ op(B[b]), op = identity or transpose per operand; the products of bfloat16 values are exact
// in float32 (short of overflow and denormals, which AMX flushes to zero), and the sums are float32.
//
// Two kernels:
//   * AMX (x86 CPUs with amx_bf16, e.g. Sapphire Rapids): 16x16 float32 tiles accumulated by TDPBF16PS. XLA's
//     CPU backend does not emit AMX instructions, which is why this file exists.
//   * portable: bfloat16 widened to float32 (a 16-bit shift), then float32 multiply-adds. No faster than XLA's own
//     float32 dot; it is the reference the AMX kernel is checked against on the machine it runs on, and what runs
//     where AMX is absent but the custom call is asked for.
// Both split C's rows over XLA's intra-op thread pool (the FFI's ThreadPool context). The "kernel" attribute picks
// one: 0 = AMX if usable else portable, 1 = portable, 2 = AMX (an error if unusable).
//
// Built as a Python extension module by setup.py (-DJAXCNN_PYTHON_MODULE): an empty module, so that tools which
// import every module of the package find one; jaxcnn/layers/bf16_ffi.py loads the library through ctypes.

#if defined(JAXCNN_PYTHON_MODULE)
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace ffi = xla::ffi;

namespace {

inline float widen(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// f(begin, end) over [0, n) in chunks, on XLA's intra-op thread pool and the calling thread. The caller takes
// chunks too and then waits only for chunks already taken, never for a queued task: so no deadlock even when
// every pool thread is itself inside such a call. A task that starts late finds no chunk left and touches only
// the shared counters.
template <typename F>
void parallel_for(ffi::ThreadPool& pool, int64_t n, const F& f) {
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n - 1);
  if (helpers <= 0) {
    f(0, n);
    return;
  }
  const int64_t chunks = std::min<int64_t>(n, (helpers + 1) * 4);
  struct State {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  auto run = [chunks, n](State& s, const F* body) {
    for (int64_t c; (c = s.next.fetch_add(1)) < chunks;) {
      (*body)(c * n / chunks, (c + 1) * n / chunks);
      if (s.done.fetch_add(1) + 1 == chunks) {
        std::lock_guard<std::mutex> lock(s.mu);
        s.cv.notify_all();
      }
    }
  };
  const F* body = &f;
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([state, run, body] { run(*state, body); });
  run(*state, body);
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == chunks; });
}

// One problem: op(A) is [m, k], op(B) is [k, n], C is [m, n] row-major. A is stored [m, k] (or [k, m] when
// transposed), B [k, n] (or [n, k]).
struct Problem {
  const uint16_t* a;
  const uint16_t* b;
  float* c;
  int64_t m, k, n;
  bool ta, tb;
  uint16_t at(int64_t i, int64_t p) const { return ta ? a[p * m + i] : a[i * k + p]; }  // op(A)[i, p]
  uint16_t bt(int64_t p, int64_t j) const { return tb ? b[j * k + p] : b[p * n + j]; }  // op(B)[p, j]
};

void portable(const Problem& q, ffi::ThreadPool& pool) {
  // op(B) as float32 [k, n] once, then each row of C is a sum of op(B)'s rows: a loop over j the compiler
  // vectorizes.
  std::vector<float> bf(static_cast<size_t>(q.k * q.n));
  for (int64_t p = 0; p < q.k; ++p)
    for (int64_t j = 0; j < q.n; ++j) bf[p * q.n + j] = widen(q.bt(p, j));
  parallel_for(pool, q.m, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = q.c + i * q.n;
      for (int64_t j = 0; j < q.n; ++j) row[j] = 0.0f;
      for (int64_t p = 0; p < q.k; ++p) {
        const float aip = widen(q.at(i, p));
        const float* brow = bf.data() + p * q.n;
        for (int64_t j = 0; j < q.n; ++j) row[j] += aip * brow[j];
      }
    }
  });
}

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
// The layout LDTILECFG reads (Intel SDM): palette at byte 0, colsb at 16-47, rows at 48-63.
static_assert(offsetof(TileConfig, colsb) == 16 && offsetof(TileConfig, rows) == 48 && sizeof(TileConfig) == 64,
              "TileConfig must be LDTILECFG's 64-byte layout");

#if defined(JAXCNN_EMULATE_AMX)

// The AMX instructions in software, as the Intel SDM defines them, so that the kernel's tile configuration,
// packing, strides, tiling and threading can be tested on a CPU without AMX (tests/layers/test_bf16_ffi.py builds
// this file with -DJAXCNN_EMULATE_AMX). Per thread: eight tile registers of 16 rows x 64 bytes, configured from
// LDTILECFG's raw 64 bytes; TDPBF16PS adds pairs of bfloat16 products into float32 with denormal inputs read as
// zero and denormal results flushed (DAZ, FTZ). What the hardware would fault on (a palette other than 1, rows
// over 16 or colsb over 64, operand shapes that do not chain) is counted instead, and the test checks the count
// is zero. Not for speed.
namespace emulated {
struct Tiles {
  bool configured = false;
  uint8_t rows[8];
  uint16_t colsb[8];
  uint8_t data[8][16 * 64];
};
thread_local Tiles tiles;
std::atomic<int64_t> faults{0};
inline void fault() { faults.fetch_add(1); }
inline void loadconfig(const void* cfg) {
  const auto* bytes = static_cast<const uint8_t*>(cfg);
  if (bytes[0] != 1) fault();
  for (int t = 0; t < 8; ++t) {
    uint16_t colsb;
    std::memcpy(&colsb, bytes + 16 + 2 * t, 2);
    tiles.colsb[t] = colsb;
    tiles.rows[t] = bytes[48 + t];
    if (colsb > 64 || tiles.rows[t] > 16) fault();
  }
  tiles.configured = true;
}
inline bool usable(int t) { return tiles.configured && tiles.rows[t] > 0 && tiles.colsb[t] > 0; }
inline void zero(int t) {
  if (!usable(t)) fault();
  std::memset(tiles.data[t], 0, sizeof tiles.data[t]);
}
inline void loadd(int t, const void* base, int64_t stride) {
  if (!usable(t)) fault();
  for (int r = 0; r < tiles.rows[t]; ++r)
    std::memcpy(tiles.data[t] + r * 64, static_cast<const uint8_t*>(base) + r * stride, tiles.colsb[t]);
}
inline void stored(int t, void* base, int64_t stride) {
  if (!usable(t)) fault();
  for (int r = 0; r < tiles.rows[t]; ++r)
    std::memcpy(static_cast<uint8_t*>(base) + r * stride, tiles.data[t] + r * 64, tiles.colsb[t]);
}
inline float daz(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? 0.0f * x : x; }
inline void dpbf16ps(int c, int a, int b) {
  // The shapes TDPBF16PS requires: C is A.rows x B.colsb/4 float32; A's pairs are B's rows.
  if (!usable(c) || !usable(a) || !usable(b) || tiles.rows[c] != tiles.rows[a] ||
      tiles.colsb[c] != tiles.colsb[b] || tiles.colsb[a] / 4 != tiles.rows[b])
    fault();
  for (int m = 0; m < tiles.rows[c]; ++m)
    for (int k = 0; k < tiles.colsb[a] / 4; ++k)
      for (int n = 0; n < tiles.colsb[c] / 4; ++n) {
        uint16_t a2[2], b2[2];
        float acc;
        std::memcpy(a2, tiles.data[a] + m * 64 + k * 4, 4);
        std::memcpy(b2, tiles.data[b] + k * 64 + n * 4, 4);
        std::memcpy(&acc, tiles.data[c] + m * 64 + n * 4, 4);
        acc = daz(acc + daz(widen(a2[0])) * daz(widen(b2[0])));
        acc = daz(acc + daz(widen(a2[1])) * daz(widen(b2[1])));
        std::memcpy(tiles.data[c] + m * 64 + n * 4, &acc, 4);
      }
}
inline void release() { tiles.configured = false; }
}  // namespace emulated
#define AMX_TARGET
#define TILE_LOADCONFIG(cfg) emulated::loadconfig(cfg)
#define TILE_ZERO(t) emulated::zero(t)
#define TILE_LOADD(t, base, stride) emulated::loadd(t, base, stride)
#define TILE_STORED(t, base, stride) emulated::stored(t, base, stride)
#define TILE_DPBF16PS(c, a, b) emulated::dpbf16ps(c, a, b)
#define TILE_RELEASE() emulated::release()
int amx_status() { return 1; }
extern "C" __attribute__((visibility("default"))) int64_t jaxcnn_bf16_matmul_emulated_faults() {
  return emulated::faults.load();
}
#define HAVE_AMX_KERNEL 1

#elif defined(__x86_64__)

#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16")))
#define TILE_LOADCONFIG(cfg) _tile_loadconfig(cfg)
#define TILE_ZERO(t) _tile_zero(t)
#define TILE_LOADD(t, base, stride) _tile_loadd(t, base, stride)
#define TILE_STORED(t, base, stride) _tile_stored(t, base, stride)
#define TILE_DPBF16PS(c, a, b) _tile_dpbf16ps(c, a, b)
#define TILE_RELEASE() _tile_release()
#define HAVE_AMX_KERNEL 1

// 1: usable; 0: the CPU has no AMX (bf16 and tile); -errno: it has, but Linux refused the tile state, which it
// hands out only to a process that asks (arch_prctl ARCH_REQ_XCOMP_PERM; Linux >= 5.16).
int amx_status() {
  static const int status = [] {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const bool amx_bf16 = (edx >> 22) & 1, amx_tile = (edx >> 24) & 1;
    if (!amx_bf16 || !amx_tile) return 0;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0 ? 1 : -errno;
  }();
  return status;
}

#endif

bool amx_usable() { return amx_status() == 1; }

#if defined(HAVE_AMX_KERNEL)

// Tiles: 0-1 C (two 16x16 float32 blocks side by side), 2 A (16 rows x 32 bfloat16), 3-4 B (16 pairs of k x 16
// columns x 2, the "VNNI" layout TDPBF16PS reads). The tile state is per thread: each chunk configures its own.
AMX_TARGET void amx_rows(const uint16_t* ap, const uint16_t* bp, float* cp, int64_t i_begin, int64_t i_end,
                         int64_t kp, int64_t np) {
  TileConfig cfg{};
  cfg.palette_id = 1;
  for (int t = 0; t < 5; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  // GCC's AMX intrinsics do not declare all the memory they read (the 64-byte config, the tiles' rows): keep
  // every store before them where it is.
  asm volatile("" ::: "memory");
  TILE_LOADCONFIG(&cfg);
  asm volatile("" ::: "memory");
  for (int64_t i0 = i_begin; i0 < i_end; i0 += 16) {
    for (int64_t j0 = 0; j0 < np; j0 += 32) {
      TILE_ZERO(0);
      TILE_ZERO(1);
      for (int64_t p0 = 0; p0 < kp; p0 += 32) {
        TILE_LOADD(2, ap + i0 * kp + p0, kp * 2);
        TILE_LOADD(3, bp + (p0 / 2) * np * 2 + j0 * 2, np * 4);
        TILE_LOADD(4, bp + (p0 / 2) * np * 2 + (j0 + 16) * 2, np * 4);
        TILE_DPBF16PS(0, 2, 3);
        TILE_DPBF16PS(1, 2, 4);
      }
      TILE_STORED(0, cp + i0 * np + j0, np * 4);
      TILE_STORED(1, cp + i0 * np + j0 + 16, np * 4);
    }
  }
  TILE_RELEASE();
}

void amx(const Problem& q, ffi::ThreadPool& pool) {
  const int64_t mp = (q.m + 15) / 16 * 16, kp = (q.k + 31) / 32 * 32, np = (q.n + 31) / 32 * 32;
  // Zero-padded copies: A as [mp, kp] row-major, B as [kp / 2, np, 2] (pairs of consecutive k per column).
  std::vector<uint16_t> ap(static_cast<size_t>(mp * kp), 0), bp(static_cast<size_t>(kp * np), 0);
  for (int64_t i = 0; i < q.m; ++i)
    for (int64_t p = 0; p < q.k; ++p) ap[i * kp + p] = q.at(i, p);
  for (int64_t p = 0; p < q.k; ++p)
    for (int64_t j = 0; j < q.n; ++j) bp[(p / 2) * np * 2 + j * 2 + (p % 2)] = q.bt(p, j);
  std::vector<float> cp(static_cast<size_t>(mp * np));
  parallel_for(pool, mp / 16, [&](int64_t begin, int64_t end) {
    amx_rows(ap.data(), bp.data(), cp.data(), begin * 16, end * 16, kp, np);
    for (int64_t i = begin * 16; i < std::min(end * 16, q.m); ++i)
      std::memcpy(q.c + i * q.n, cp.data() + i * np, q.n * sizeof(float));
  });
}

#else

int amx_status() { return 0; }
bool amx_usable() { return false; }
void amx(const Problem&, ffi::ThreadPool&) {}

#endif

ffi::Error Bf16Matmul(ffi::ThreadPool pool, ffi::Buffer<ffi::BF16> a, ffi::Buffer<ffi::BF16> b,
                      ffi::ResultBuffer<ffi::F32> c, bool transpose_a, bool transpose_b, int64_t kernel) {
  const auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
  const size_t rank = ad.size();
  if (rank < 2 || bd.size() != rank || cd.size() != rank)
    return ffi::Error::InvalidArgument("bf16_matmul: operands need the same rank, at least 2");
  int64_t batch = 1;
  for (size_t d = 0; d + 2 < rank; ++d) {
    if (ad[d] != bd[d] || ad[d] != cd[d])
      return ffi::Error::InvalidArgument("bf16_matmul: batch dimensions differ");
    batch *= ad[d];
  }
  const int64_t m = transpose_a ? ad[rank - 1] : ad[rank - 2], k = transpose_a ? ad[rank - 2] : ad[rank - 1];
  const int64_t kb = transpose_b ? bd[rank - 1] : bd[rank - 2], n = transpose_b ? bd[rank - 2] : bd[rank - 1];
  if (k != kb || cd[rank - 2] != m || cd[rank - 1] != n)
    return ffi::Error::InvalidArgument("bf16_matmul: inner or result dimensions do not match");
  if (kernel < 0 || kernel > 2) return ffi::Error::InvalidArgument("bf16_matmul: kernel is 0, 1 or 2");
  const bool use_amx = kernel == 2 || (kernel == 0 && amx_usable());
  if (use_amx && !amx_usable())
    return ffi::Error(ffi::ErrorCode::kFailedPrecondition, "bf16_matmul: AMX is not usable on this CPU");
  const uint16_t* ap = a.typed_data();
  const uint16_t* bp = b.typed_data();
  float* cp = c->typed_data();
  for (int64_t s = 0; s < batch; ++s) {
    Problem q{ap + s * m * k, bp + s * k * n, cp + s * m * n, m, k, n, transpose_a, transpose_b};
    if (m == 0 || n == 0) continue;
    if (k == 0) {
      std::memset(q.c, 0, static_cast<size_t>(m * n) * sizeof(float));
      continue;
    }
    if (use_amx)
      amx(q, pool);
    else
      portable(q, pool);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxcnn_bf16_matmul, Bf16Matmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Arg<ffi::Buffer<ffi::BF16>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b")
                                  .Attr<int64_t>("kernel"));

// 1 where the AMX kernel can run here; 0 where the CPU has no AMX; -errno where Linux refused the tile state.
extern "C" __attribute__((visibility("default"))) int jaxcnn_bf16_matmul_amx_status() { return amx_status(); }

#if !defined(JAXCNN_SOURCE_SHA256)
#define JAXCNN_SOURCE_SHA256 ""
#endif
// The SHA-256 of the source this library was built from (setup.py passes it): a stale build is detectable.
extern "C" __attribute__((visibility("default"))) const char* jaxcnn_bf16_matmul_source_sha256() {
  return JAXCNN_SOURCE_SHA256;
}

#if defined(JAXCNN_PYTHON_MODULE)
static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_bf16_matmul",
                                 "jaxcnn's XLA FFI kernel for bfloat16 products; loaded by jaxcnn.layers.bf16_ffi",
                                 -1, nullptr};
PyMODINIT_FUNC PyInit__bf16_matmul() { return PyModule_Create(&module_def); }
#endif
