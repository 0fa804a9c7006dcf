// Secrets of secure mode: random device passwords and their salted hashes
// (OpenSSL). Passwords are shown once; only PasswordHash is ever stored.
#pragma once
#include <string>
#include <string_view>

namespace maestra::security {

// `bytes` of randomness from OpenSSL's CSPRNG, base64url without padding.
std::string random_token(std::size_t bytes);

struct PasswordHash {
  std::string salt;  // hex
  std::string hash;  // hex of SHA-256(salt || password)
};

PasswordHash hash_password(std::string_view password);
bool verify_password(const PasswordHash& stored, std::string_view password);

}  // namespace maestra::security
