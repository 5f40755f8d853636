// Issuance throughput against the raw wolfCrypt signature it is built on, in the same run:
// a full issuance (parse + verify the CSR, build, sign and re-parse the certificate) should
// cost no more than twice one bare ECDSA P-256 signature.
// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
// clang-format on
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "edgetrust/pki/pki.h"

namespace {

using Clock = std::chrono::steady_clock;
using edgetrust::Bytes;
namespace pki = edgetrust::pki;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double RawSignsPerSecond(double budget) {
  WC_RNG rng;
  ecc_key key;
  if (wc_InitRng(&rng) != 0 || wc_ecc_init(&key) != 0 ||
      wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0) {
    std::fprintf(stderr, "wolfCrypt setup failed\n");
    std::exit(1);
  }
  uint8_t hash[WC_SHA256_DIGEST_SIZE] = {1, 2, 3};
  uint8_t sig[80];
  long n = 0;
  const auto start = Clock::now();
  while (Seconds(start) < budget) {
    for (int i = 0; i < 50; ++i) {
      word32 len = sizeof sig;
      if (wc_ecc_sign_hash(hash, sizeof hash, sig, &len, &rng, &key) != 0) std::exit(1);
      hash[0] = sig[len - 1];
    }
    n += 50;
  }
  const double rate = n / Seconds(start);
  wc_ecc_free(&key);
  wc_FreeRng(&rng);
  return rate;
}

// The other half of an issuance: verifying a signature made by a key never seen before (the
// CSR's), straight through wolfCrypt.
double RawFreshVerifiesPerSecond(double budget, int count) {
  WC_RNG rng;
  if (wc_InitRng(&rng) != 0) std::exit(1);
  struct Sample {
    uint8_t point[65];
    uint8_t sig[80];
    word32 sig_len;
  };
  std::vector<Sample> samples(static_cast<size_t>(count));
  uint8_t hash[WC_SHA256_DIGEST_SIZE] = {9, 8, 7};
  for (Sample& s : samples) {
    ecc_key key;
    wc_ecc_init(&key);
    word32 len = sizeof s.point;
    s.sig_len = sizeof s.sig;
    if (wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0 ||
        wc_ecc_export_x963(&key, s.point, &len) != 0 ||
        wc_ecc_sign_hash(hash, sizeof hash, s.sig, &s.sig_len, &rng, &key) != 0) {
      std::exit(1);
    }
    wc_ecc_free(&key);
  }
  long n = 0;
  const auto start = Clock::now();
  for (const Sample& s : samples) {
    ecc_key key;
    int ok = 0;
    wc_ecc_init(&key);
    if (wc_ecc_import_x963_ex(s.point, sizeof s.point, &key, ECC_SECP256R1) != 0 ||
        wc_ecc_verify_hash(s.sig, s.sig_len, hash, sizeof hash, &ok, &key) != 0 || ok != 1) {
      std::exit(1);
    }
    wc_ecc_free(&key);
    ++n;
    if ((n & 15) == 0 && Seconds(start) >= budget) break;
  }
  wc_FreeRng(&rng);
  return n / Seconds(start);
}

// Every CSR carries a fresh key, as in the field: a key seen once gets no help from wolfCrypt's
// fixed-point cache (FP_ECC), and re-using a few CSRs in a loop would thrash that cache instead.
double IssuancesPerSecond(double budget, double raw_rate) {
  auto ca_key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
  auto ca = pki::CreateSelfSignedCa(*ca_key, {"Bench CA", "edgetrust", ""}, 30);
  if (!ca.ok()) {
    std::fprintf(stderr, "CA: %s\n", ca.error().ToString().c_str());
    std::exit(1);
  }
  std::vector<Bytes> csrs;
  const int count = static_cast<int>(budget * raw_rate) + 100;
  for (int i = 0; i < count; ++i) {
    auto key = pki::PrivateKey::Generate(pki::KeyType::kEcdsaP256);
    char id[32];
    std::snprintf(id, sizeof id, "dev-%06d", i);
    csrs.push_back(*pki::CreateCsr(*key, {id, "acme", "thermo-1"}));
  }
  const int64_t now = edgetrust::UnixNow();
  long n = 0;
  const auto start = Clock::now();
  {
    for (const Bytes& der : csrs) {
      auto csr = pki::ParseCsrDer(der);
      if (!csr.ok()) std::exit(1);
      pki::IssueRequest req;
      req.subject = csr->subject;
      req.public_key_der = std::move(csr->public_key_der);
      req.not_before = now - 60;
      req.not_after = now + 90 * 86400;
      req.extended_usage = pki::ExtendedUsage::kClientAuth;
      auto cert = pki::IssueCertificate(*ca, *ca_key, req);
      if (!cert.ok()) {
        std::fprintf(stderr, "issue: %s\n", cert.error().ToString().c_str());
        std::exit(1);
      }
      ++n;
      if ((n & 15) == 0 && Seconds(start) >= budget) break;
    }
  }
  return n / Seconds(start);
}

}  // namespace

int main(int argc, char** argv) {
  const double budget = argc > 1 ? std::atof(argv[1]) : 2.0;
  wolfCrypt_Init();
  // Warm both paths (fixed-point tables, page faults) before timing.
  const double warm = RawSignsPerSecond(0.2);
  IssuancesPerSecond(0.1, warm);
  const double raw = RawSignsPerSecond(budget);
  const double issue = IssuancesPerSecond(budget, raw);
  const double verify = RawFreshVerifiesPerSecond(budget, static_cast<int>(issue * budget * 2) + 100);
  std::printf("pki: raw sign=%.0f /s, issuance=%.0f /s, ratio=%.2f (goal >= 0.5)\n", raw, issue,
              issue / raw);
  // The floor an issuance cannot beat: one signature plus one verification by a fresh key.
  const double floor = 1.0 / (1.0 / raw + 1.0 / verify);
  std::printf("pki: raw verify(fresh key)=%.0f /s, raw sign+verify=%.0f /s, issuance/(sign+verify)=%.2f\n",
              verify, floor, issue / floor);
  return 0;
}
