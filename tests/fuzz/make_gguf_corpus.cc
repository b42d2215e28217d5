// Writes the fuzzer's seed corpus into a directory: the small valid GGUF image and one file per
// corrupt variant (tests/support/gguf_corpus.h).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "gguf_corpus.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_gguf_corpus DIR\n");
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    std::ofstream(dir / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<long>(bytes.size()));
  };
  write("valid.gguf", magnetar::testing::small_valid_image().encode());
  size_t n = 1;
  for (const auto& c : magnetar::testing::corrupt_cases(/*all_truncations=*/false)) {
    write(c.name + ".gguf", c.bytes);
    ++n;
  }
  std::printf("wrote %zu seed files to %s\n", n, dir.c_str());
  return 0;
}
