// Protocol-agnostic error kinds of the core, and a small Result type.
// The HTTP adapter maps a kind to a status code in one function, the MQTT
// adapter to a reply payload or a drop counter in another; the core never
// speaks HTTP.
#pragma once
#include <string>
#include <utility>
#include <variant>

namespace maestra::core {

enum class ErrorKind {
  malformed,      // not JSON, or not the expected JSON shape at the top
  invalid_field,  // a field is missing, of the wrong type, or out of range
  not_found,      // unknown device
  conflict,       // duplicate hardware_id
  too_large,      // body or payload over the limit
  unavailable,    // the database is down
  unauthorized,   // missing credentials
  forbidden,      // wrong credentials
  internal,       // a bug or bad stored data: logged with its cause, never blamed on the client
};

struct Error {
  ErrorKind kind;
  std::string field;   // the offending field, when there is one
  std::string detail;  // human text
  std::string existing_id = {};  // for conflicts: the id of the device already registered
};

std::string_view error_code(ErrorKind kind);  // "malformed_json", "invalid_field", ...

struct Done {};  // the value of a Result that carries no value

template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

inline Error invalid(std::string field, std::string detail) {
  return Error{ErrorKind::invalid_field, std::move(field), std::move(detail)};
}

}  // namespace maestra::core
