// A scratch directory for one test process.
//
// CTest runs test cases in parallel processes; each gets its own directory under the build tree
// (MAGNETAR_TEST_TMP/<name>-<pid>), removed when the process exits, so that parallel cases never
// share or delete each other's files.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace magnetar::testing {

inline std::filesystem::path scratch_dir(const std::string& name) {
  struct Owner {
    std::filesystem::path dir;
    ~Owner() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  };
  static Owner owner{std::filesystem::path(MAGNETAR_TEST_TMP) /
                     (name + "-" + std::to_string(::getpid()))};
  std::filesystem::create_directories(owner.dir);
  return owner.dir;
}

}  // namespace magnetar::testing
