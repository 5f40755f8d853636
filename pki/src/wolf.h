// The one place the wolfSSL headers are pulled in (options.h first, so every struct layout
// matches the installed library), plus the process-wide helpers built on them.
#pragma once

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
// clang-format on
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <string.h>

#include <span>
#include <string>

#include "edgetrust/common/result.h"

namespace edgetrust::pki::internal {

// wolfCrypt_Init once per process.
void EnsureWolfInit();

// A DRBG per thread: WC_RNG is not safe to share between threads without a lock, and a lock
// would serialise every signature of the gateway's worker threads.
WC_RNG* ThreadRng();

// wolfCrypt rejects a null pointer even with a zero length; an empty span may carry one.
inline const uint8_t* NonNull(std::span<const uint8_t> v) {
  static const uint8_t kEmpty = 0;
  return v.data() ? v.data() : &kEmpty;
}

// Clears secret bytes; the compiler may not elide it.
inline void Wipe(void* p, size_t n) { explicit_bzero(p, n); }

// "what: wolfSSL error text (code)".
Error WolfError(ErrorCode code, const char* what, int ret);

}  // namespace edgetrust::pki::internal
