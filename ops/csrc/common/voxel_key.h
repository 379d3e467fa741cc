// The 64-bit key of a voxel (batch, x, y, z) shared by the CPU and CUDA hash
// tables of `voxelize`: 16 bits per component, batch below 2^15 so that the
// top bit stays free and all-ones can mark an empty slot.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

namespace ikne {

constexpr int64_t kVoxelBatchLimit = int64_t{1} << 15;  // batch index in [0, 2^15)
constexpr int64_t kVoxelCoordLimit = int64_t{1} << 16;  // x, y, z in [0, 2^16)
constexpr uint64_t kEmptyVoxelKey = ~uint64_t{0};       // never a packed key

C10_HOST_DEVICE inline bool voxel_in_range(int64_t b, int64_t x, int64_t y, int64_t z) {
  return b >= 0 && b < kVoxelBatchLimit && x >= 0 && x < kVoxelCoordLimit && y >= 0 &&
         y < kVoxelCoordLimit && z >= 0 && z < kVoxelCoordLimit;
}

C10_HOST_DEVICE inline uint64_t pack_voxel_key(int64_t b, int64_t x, int64_t y, int64_t z) {
  return (static_cast<uint64_t>(b) << 48) | (static_cast<uint64_t>(x) << 32) |
         (static_cast<uint64_t>(y) << 16) | static_cast<uint64_t>(z);
}

// splitmix64's finaliser: spreads neighbouring voxels over the table.
C10_HOST_DEVICE inline uint64_t hash_voxel_key(uint64_t key) {
  key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ULL;
  key = (key ^ (key >> 27)) * 0x94d049bb133111ebULL;
  return key ^ (key >> 31);
}

// Smallest power of two >= 2 * n (at least 16): load factor <= 1/2.
inline int64_t voxel_table_capacity(int64_t n) {
  int64_t capacity = 16;
  while (capacity < 2 * n) capacity <<= 1;
  return capacity;
}

}  // namespace ikne
