// Postgres array literals for the batched statements of the stores ("{a,b,...}",
// unnested server-side, so a batch of any size is one parameter). A uuid,
// boolean, integer or one of our fixed state words needs no quoting; free text
// (add_text: names, JSON, errors) is quoted and escaped.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace maestra::store {

class ArrayLiteral {
 public:
  void add(std::string_view element) {
    text_ += text_.size() > 1 ? "," : "";
    text_ += element;
  }
  void add(std::int64_t n) { add(std::string_view(std::to_string(n))); }
  void add_bool(bool b) { add(std::string_view(b ? "t" : "f")); }
  void add_null() { add(std::string_view("NULL")); }
  void add_text(const std::optional<std::string>& value) {
    if (!value) return add_null();
    std::string quoted = "\"";
    for (const char ch : *value) {
      if (ch == '"' || ch == '\\') quoted += '\\';
      quoted += ch;
    }
    add(std::string_view(quoted + "\""));
  }
  std::string str() const { return text_ + "}"; }

 private:
  std::string text_ = "{";
};

}  // namespace maestra::store
