// A per-op registry of device implementations, in the style of mmcv's
// DISPATCH_DEVICE_IMPL: each op's dispatcher `<op>_impl` is the registry key,
// kernels register themselves per device type at load time (CPU kernels in
// their own file, CUDA kernels in cuda/cudabind.cpp), and the dispatcher
// forwards to the implementation for the device of its tensor arguments.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <optional>

namespace ikne {

// The common device of the tensor arguments. Error messages here format no
// numbers: such messages crashed the GPU machine's build of the extension.
class DeviceOfArgs {
 public:
  template <typename... Args>
  static at::Device of(const char* op_name, const Args&... args) {
    std::optional<at::Device> device;
    (visit(op_name, device, args), ...);
    TORCH_CHECK(device.has_value(), op_name, ": no tensor argument to dispatch on");
    return *device;
  }

 private:
  static void visit(const char* op_name, std::optional<at::Device>& device,
                    const at::Tensor& tensor) {
    if (!tensor.defined()) return;
    if (!device) {
      device = tensor.device();
    } else {
      TORCH_CHECK(*device == tensor.device(), op_name,
                  ": internal: tensors on several devices (the Python wrapper checks this)");
    }
  }
  template <typename T>
  static void visit(const char*, std::optional<at::Device>&, const T&) {}
};

template <typename FunctionType, FunctionType key>
class DeviceRegistry;

// One registry per dispatcher function `key`; implementations share its signature.
template <typename Ret, typename... Args, Ret (*key)(Args...)>
class DeviceRegistry<Ret (*)(Args...), key> {
 public:
  using Impl = Ret (*)(Args...);

  static DeviceRegistry& instance() {
    static DeviceRegistry registry;
    return registry;
  }

  bool add(c10::DeviceType device, Impl impl) {
    impls_[static_cast<size_t>(device)] = impl;
    return true;
  }

  template <typename... CallArgs>
  Ret dispatch(const char* op_name, CallArgs&&... args) const {
    const at::Device device = DeviceOfArgs::of(op_name, args...);
    const Impl impl = impls_[static_cast<size_t>(device.type())];
    TORCH_CHECK(impl != nullptr, op_name, ": no implementation for device type ",
                c10::DeviceTypeName(device.type()), " (was ikne_plugin._ext built with CUDA?)");
    return impl(std::forward<CallArgs>(args)...);
  }

 private:
  std::array<Impl, static_cast<size_t>(c10::DeviceType::COMPILE_TIME_MAX_DEVICE_TYPES)>
      impls_{};
};

}  // namespace ikne

// Register `impl` as the `device` (CPU, CUDA) implementation of dispatcher `key`.
#define REGISTER_DEVICE_IMPL(key, device, impl)                                  \
  static const bool key##_##device##_registered =                                \
      ::ikne::DeviceRegistry<decltype(&key), key>::instance().add(               \
          c10::DeviceType::device, impl)

// Call the implementation of dispatcher `key` for the device of the arguments.
#define DISPATCH_DEVICE_IMPL(key, ...) \
  ::ikne::DeviceRegistry<decltype(&key), key>::instance().dispatch(#key, __VA_ARGS__)
