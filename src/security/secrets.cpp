// Random tokens, salted SHA-256 and constant-time verification (OpenSSL).
#include "security/secrets.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>
#include <vector>

namespace maestra::security {

namespace {
std::vector<unsigned char> random_bytes(std::size_t n) {
  std::vector<unsigned char> bytes(n);
  if (RAND_bytes(bytes.data(), static_cast<int>(n)) != 1) throw std::runtime_error("no randomness available");
  return bytes;
}

std::string hex(const unsigned char* data, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[data[i] >> 4]);
    out.push_back(digits[data[i] & 0x0f]);
  }
  return out;
}

std::string sha256_hex(std::string_view salt, std::string_view password) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, salt.data(), salt.size());
  EVP_DigestUpdate(ctx, password.data(), password.size());
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_MD_CTX_free(ctx);
  return hex(digest, length);
}
}  // namespace

std::string random_token(std::size_t bytes) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const auto raw = random_bytes(bytes);
  std::string out;
  unsigned int buffer = 0;
  int bits = 0;
  for (unsigned char b : raw) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 6) {
      out.push_back(alphabet[(buffer >> (bits - 6)) & 0x3f]);
      bits -= 6;
    }
  }
  if (bits > 0) out.push_back(alphabet[(buffer << (6 - bits)) & 0x3f]);
  return out;
}

PasswordHash hash_password(std::string_view password) {
  const auto salt_bytes = random_bytes(16);
  PasswordHash h;
  h.salt = hex(salt_bytes.data(), salt_bytes.size());
  h.hash = sha256_hex(h.salt, password);
  return h;
}

bool verify_password(const PasswordHash& stored, std::string_view password) {
  const std::string candidate = sha256_hex(stored.salt, password);
  return candidate.size() == stored.hash.size() &&
         CRYPTO_memcmp(candidate.data(), stored.hash.data(), candidate.size()) == 0;
}

}  // namespace maestra::security
