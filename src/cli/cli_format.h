// Formatting shared by the subcommands: byte counts, shapes and per-type tensor totals.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "quant/ggml_type.h"

namespace magnetar::cli {

// "80.76 GiB", "512.0 KiB", "34 B".
std::string human_bytes(uint64_t bytes);
// "1,234,567".
std::string thousands(uint64_t n);
// "[4096, 129280]".
std::string shape_string(const std::vector<int64_t>& ne);

// Tensor count and bytes per storage type.
struct TypeTotals {
  struct Row {
    uint64_t tensors = 0;
    uint64_t bytes = 0;
  };
  std::map<quant::GgmlType, Row> rows;

  void add(quant::GgmlType type, uint64_t bytes);
  uint64_t total_tensors() const;
  uint64_t total_bytes() const;
  // A small table: type, tensors, bytes, human size; then the total line.
  std::string table() const;
};

}  // namespace magnetar::cli
