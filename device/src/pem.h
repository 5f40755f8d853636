// PEM framing only (no decoding): finds "-----BEGIN X-----" … "-----END X-----" blocks.
#pragma once

#include <string_view>
#include <vector>

namespace edgetrust::device::internal {

struct PemBlock {
  std::string_view label;  // e.g. "CERTIFICATE"
  std::string_view text;   // the whole block, BEGIN line to END line, with the trailing newline
};

// Blocks in order; a block without a matching END line ends the scan.
std::vector<PemBlock> SplitPem(std::string_view text);

}  // namespace edgetrust::device::internal
