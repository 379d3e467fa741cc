// Squared distance dx*dx + dy*dy then + dz*dz with round-to-nearest intrinsics: nvcc would
// otherwise fuse multiply-adds, and the CUDA kernels of furthest_point_sample and ball_query
// must round exactly as the CPU kernels and the PyTorch references do.
#pragma once

namespace ikne {

__device__ inline float squared_distance(float dx, float dy, float dz) {
  return __fadd_rn(__fadd_rn(__fmul_rn(dx, dx), __fmul_rn(dy, dy)), __fmul_rn(dz, dz));
}

__device__ inline double squared_distance(double dx, double dy, double dz) {
  return __dadd_rn(__dadd_rn(__dmul_rn(dx, dx), __dmul_rn(dy, dy)), __dmul_rn(dz, dz));
}

}  // namespace ikne
