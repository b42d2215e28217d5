// libFuzzer entry point: any byte string given to the GGUF reader must either parse, or be
// refused with a GgufError. Anything else (a crash, a sanitizer report, another exception type,
// unbounded memory) is a bug. Parsed files also go through the model check, which reads metadata
// and the tensor directory with other expectations.
#include <cstddef>
#include <cstdint>
#include <span>

#include "gguf/gguf_reader.h"
#include "model/model_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    magnetar::gguf::GgufFile file =
        magnetar::gguf::GgufFile::parse(std::span<const uint8_t>(data, size), "fuzz");
    magnetar::model::ModelCheck check = magnetar::model::check_model_file(file);
    (void)check.ok();
    for (const magnetar::gguf::TensorInfo& t : file.tensors()) {
      auto bytes = file.tensor_data(t);
      if (!bytes.empty()) (void)bytes[bytes.size() - 1];  // in bounds by construction
    }
  } catch (const magnetar::gguf::GgufError&) {
  }
  return 0;
}
