// Tiling shared by the SIMD kernel files: ISA-free templates, instantiated
// inside each file with that file's tiles (and compiled with its flags).
#pragma once
#include <cstddef>

namespace embedq {
namespace tiling {

// Walks an m x n output in Tile::MR x Tile::NR tiles (MR rows of A against NR
// rows of B); leftover rows and columns go to smaller instantiations of the
// same tile, so every size runs the vector code. Each block of A rows meets
// the whole B panel before moving on: the A rows stay in L1 while B streams
// from L2. depth is k for f32 and the block count for Q8_0.
template <class Tile, int MR, int R = Tile::NR - 1>
inline void grid_col_tail(size_t rem, const typename Tile::Elem* A, size_t lda, const typename Tile::Elem* B,
                          size_t ldb, float* C, size_t ldc, size_t depth) {
  if constexpr (R > 0) {
    if (rem == R)
      Tile::template run<MR, R>(A, lda, B, ldb, C, ldc, depth);
    else
      grid_col_tail<Tile, MR, R - 1>(rem, A, lda, B, ldb, C, ldc, depth);
  }
}

template <class Tile, int MR>
void grid_row_block(const typename Tile::Elem* A, size_t lda, const typename Tile::Elem* B, size_t ldb,
                    float* C, size_t ldc, size_t n, size_t depth) {
  size_t j = 0;
  for (; j + Tile::NR <= n; j += Tile::NR)
    Tile::template run<MR, Tile::NR>(A, lda, B + j * ldb, ldb, C + j, ldc, depth);
  grid_col_tail<Tile, MR>(n - j, A, lda, B + j * ldb, ldb, C + j, ldc, depth);
}

template <class Tile, int R = Tile::MR - 1>
inline void grid_row_tail(size_t rem, const typename Tile::Elem* A, size_t lda, const typename Tile::Elem* B,
                          size_t ldb, float* C, size_t ldc, size_t n, size_t depth) {
  if constexpr (R > 0) {
    if (rem == R)
      grid_row_block<Tile, R>(A, lda, B, ldb, C, ldc, n, depth);
    else
      grid_row_tail<Tile, R - 1>(rem, A, lda, B, ldb, C, ldc, n, depth);
  }
}

template <class Tile>
void gemm_grid(const typename Tile::Elem* A, size_t lda, const typename Tile::Elem* B, size_t ldb, float* C,
               size_t ldc, size_t m, size_t n, size_t depth) {
  size_t i = 0;
  for (; i + Tile::MR <= m; i += Tile::MR)
    grid_row_block<Tile, Tile::MR>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, n, depth);
  grid_row_tail<Tile>(m - i, A + i * lda, lda, B, ldb, C + i * ldc, ldc, n, depth);
}

}  // namespace tiling
}  // namespace embedq
