#include "cli/cli_format.h"

#include <fmt/format.h>

namespace magnetar::cli {

std::string human_bytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", v, kUnits[u]);
}

std::string thousands(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string shape_string(const std::vector<int64_t>& ne) {
  return fmt::format("[{}]", fmt::join(ne, ", "));
}

void TypeTotals::add(quant::GgmlType type, uint64_t bytes) {
  Row& r = rows[type];
  r.tensors += 1;
  r.bytes += bytes;
}

uint64_t TypeTotals::total_tensors() const {
  uint64_t n = 0;
  for (const auto& [type, row] : rows) n += row.tensors;
  return n;
}

uint64_t TypeTotals::total_bytes() const {
  uint64_t n = 0;
  for (const auto& [type, row] : rows) n += row.bytes;
  return n;
}

std::string TypeTotals::table() const {
  std::string out =
      fmt::format("  {:<8} {:>8} {:>20} {:>12}\n", "type", "tensors", "bytes", "size");
  for (const auto& [type, row] : rows) {
    out += fmt::format("  {:<8} {:>8} {:>20} {:>12}\n", quant::type_name(type), row.tensors,
                       thousands(row.bytes), human_bytes(row.bytes));
  }
  out += fmt::format("  {:<8} {:>8} {:>20} {:>12}\n", "total", total_tensors(),
                     thousands(total_bytes()), human_bytes(total_bytes()));
  return out;
}

}  // namespace magnetar::cli
