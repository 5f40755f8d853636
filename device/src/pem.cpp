#include "pem.h"

#include <string>

namespace edgetrust::device::internal {

std::vector<PemBlock> SplitPem(std::string_view text) {
  constexpr std::string_view kBegin = "-----BEGIN ";
  constexpr std::string_view kEnd = "-----END ";
  constexpr std::string_view kDashes = "-----";
  std::vector<PemBlock> blocks;
  size_t pos = 0;
  while ((pos = text.find(kBegin, pos)) != std::string_view::npos) {
    size_t label_start = pos + kBegin.size();
    size_t label_end = text.find(kDashes, label_start);
    if (label_end == std::string_view::npos) break;
    std::string_view label = text.substr(label_start, label_end - label_start);
    if (label.find('\n') != std::string_view::npos) {
      pos = label_start;
      continue;
    }
    std::string end_line = std::string(kEnd) + std::string(label) + std::string(kDashes);
    size_t end = text.find(end_line, label_end);
    if (end == std::string_view::npos) break;
    end += end_line.size();
    if (end < text.size() && text[end] == '\r') ++end;
    if (end < text.size() && text[end] == '\n') ++end;
    blocks.push_back({label, text.substr(pos, end - pos)});
    pos = end;
  }
  return blocks;
}

}  // namespace edgetrust::device::internal
