// Result<T>: a value or an Error. No exceptions cross a part's public API; callers convert an
// Error at the edges (MOSQ_ERR_* in the plugin, an exit code in tools, an `err` code on the wire).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace edgetrust {

// Closed set of error codes. Add a code only when a caller must act differently on it.
enum class ErrorCode {
  kInvalidArgument,   // caller input is malformed (bad YAML, bad msgpack, bad CLI argument)
  kNotFound,          // the thing asked for does not exist
  kAlreadyExists,     // refusing to overwrite
  kPermissionDenied,  // policy or state forbids it
  kUnauthenticated,   // a signature, chain or fingerprint check failed
  kExpired,           // a certificate or token is outside its validity window
  kRevoked,           // a certificate or device is revoked
  kResourceExhausted, // a store, queue or rate limit is full
  kFailedPrecondition,// wrong state for the operation (e.g. schema version mismatch)
  kDataLoss,          // stored data is corrupt
  kUnavailable,       // an external thing (file, broker, token) cannot be reached now
  kIo,                // an operating system call failed
  kCrypto,            // the crypto library failed for a reason that is not the caller's input
  kInternal,          // a bug
};

std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code;
  std::string message;

  // "invalid_argument: <message>"
  std::string ToString() const;
};

inline Error MakeError(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
  Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { assert(!ok_); return error_; }
  Error&& error() && { assert(!ok_); return std::move(error_); }

 private:
  Error error_{ErrorCode::kInternal, {}};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status OkStatus() { return Status(); }

}  // namespace edgetrust

#define ET_CONCAT_INNER_(a, b) a##b
#define ET_CONCAT_(a, b) ET_CONCAT_INNER_(a, b)

// Returns the error of a Result/Status expression from the enclosing function.
#define ET_RETURN_IF_ERROR(expr)                              \
  do {                                                        \
    auto et_status_ = (expr);                                 \
    if (!et_status_.ok()) return std::move(et_status_).error(); \
  } while (0)

// ET_ASSIGN_OR_RETURN(auto x, Foo()); binds the value or returns the error.
#define ET_ASSIGN_OR_RETURN(lhs, expr) \
  ET_ASSIGN_OR_RETURN_IMPL_(ET_CONCAT_(et_result_, __LINE__), lhs, expr)
#define ET_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).error();   \
  lhs = std::move(tmp).value()
