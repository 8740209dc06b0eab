#include "common/label_selector.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pc {
namespace {

constexpr size_t kMaxNameLength = 63;
constexpr size_t kMaxPrefixLength = 253;
constexpr size_t kMaxSelectorLength = 4096;

absl::Status Invalid(absl::string_view selector, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid label_selector \"", selector, "\": ", why));
}

bool IsAlnum(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c));
}

// A label name or value: alphanumerics at both ends, [-_.] inside.
bool IsName(absl::string_view s, bool allow_empty) {
  if (s.empty()) return allow_empty;
  if (s.size() > kMaxNameLength) return false;
  if (!IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return IsAlnum(c) || c == '-' || c == '_' || c == '.';
  });
}

// A DNS subdomain: lowercase alphanumerics and '-' in dot-separated labels.
bool IsDnsSubdomain(absl::string_view s) {
  if (s.empty() || s.size() > kMaxPrefixLength) return false;
  for (absl::string_view part : absl::StrSplit(s, '.')) {
    if (part.empty() || part.size() > 63) return false;
    if (part.front() == '-' || part.back() == '-') return false;
    for (char c : part) {
      if (!(absl::ascii_islower(static_cast<unsigned char>(c)) ||
            absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-')) {
        return false;
      }
    }
  }
  return true;
}

std::string CheckKey(absl::string_view key) {
  absl::string_view name = key;
  const size_t slash = key.find('/');
  if (slash != absl::string_view::npos) {
    if (!IsDnsSubdomain(key.substr(0, slash))) {
      return absl::StrCat("label key prefix \"", key.substr(0, slash),
                          "\" must be a DNS subdomain (lowercase, dots)");
    }
    name = key.substr(slash + 1);
  }
  if (!IsName(name, /*allow_empty=*/false)) {
    return absl::StrCat(
        "label key \"", key,
        "\" must be at most 63 characters, alphanumerics at both ends and "
        "'-', '_', '.' inside (optionally prefixed by a DNS subdomain and "
        "'/')");
  }
  return "";
}

std::string CheckValue(absl::string_view value) {
  if (IsName(value, /*allow_empty=*/true)) return "";
  return absl::StrCat(
      "label value \"", value,
      "\" must be empty or at most 63 characters, alphanumerics at both ends "
      "and '-', '_', '.' inside");
}

// Splits at commas outside parentheses.
std::vector<absl::string_view> SplitTerms(absl::string_view text, bool* ok) {
  std::vector<absl::string_view> terms;
  int depth = 0;
  size_t start = 0;
  *ok = true;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '(') {
      if (++depth > 1) *ok = false;
    } else if (text[i] == ')') {
      if (--depth < 0) *ok = false;
    } else if (text[i] == ',' && depth == 0) {
      terms.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  if (depth != 0) *ok = false;
  terms.push_back(text.substr(start));
  return terms;
}

// The word `op` ("in", "notin") followed by whitespace or '(' in `rest`.
bool TakeWord(absl::string_view* rest, absl::string_view op) {
  if (!absl::StartsWith(*rest, op)) return false;
  absl::string_view after = rest->substr(op.size());
  if (!after.empty() && after.front() != '(' &&
      !absl::ascii_isspace(static_cast<unsigned char>(after.front()))) {
    return false;
  }
  *rest = absl::StripLeadingAsciiWhitespace(after);
  return true;
}

}  // namespace

absl::StatusOr<LabelSelector> LabelSelector::Parse(absl::string_view text) {
  LabelSelector selector;
  if (text.size() > kMaxSelectorLength) {
    return Invalid(text.substr(0, 64),
                   absl::StrCat("longer than ", kMaxSelectorLength, " bytes"));
  }
  const absl::string_view all = text;
  text = absl::StripAsciiWhitespace(text);
  if (text.empty()) return selector;
  bool balanced;
  std::vector<absl::string_view> terms = SplitTerms(text, &balanced);
  if (!balanced) return Invalid(all, "unbalanced parentheses");
  for (absl::string_view term : terms) {
    term = absl::StripAsciiWhitespace(term);
    if (term.empty()) {
      return Invalid(all,
                     "empty requirement (two commas, or a comma at an "
                     "end)");
    }
    Requirement r;
    // "!key"
    if (term.front() == '!') {
      r.key = std::string(absl::StripLeadingAsciiWhitespace(term.substr(1)));
      r.op = Op::kNotExists;
      if (std::string e = CheckKey(r.key); !e.empty()) return Invalid(all, e);
      selector.requirements_.push_back(std::move(r));
      continue;
    }
    // The key runs to the first space or operator character.
    size_t end = 0;
    while (end < term.size() && term[end] != '=' && term[end] != '!' &&
           term[end] != '(' && term[end] != '<' && term[end] != '>' &&
           !absl::ascii_isspace(static_cast<unsigned char>(term[end]))) {
      ++end;
    }
    r.key = std::string(term.substr(0, end));
    if (std::string e = CheckKey(r.key); !e.empty()) return Invalid(all, e);
    absl::string_view rest =
        absl::StripLeadingAsciiWhitespace(term.substr(end));
    if (rest.empty()) {
      r.op = Op::kExists;
    } else if (absl::ConsumePrefix(&rest, "==") ||
               absl::ConsumePrefix(&rest, "=")) {
      r.op = Op::kEquals;
    } else if (absl::ConsumePrefix(&rest, "!=")) {
      r.op = Op::kNotEquals;
    } else if (TakeWord(&rest, "notin")) {
      r.op = Op::kNotIn;
    } else if (TakeWord(&rest, "in")) {
      r.op = Op::kIn;
    } else if (rest.front() == '<' || rest.front() == '>') {
      return Invalid(all, absl::StrCat("operator '", rest.substr(0, 1),
                                       "' is not supported here (use =, ==, "
                                       "!=, in, notin, KEY or !KEY)"));
    } else {
      return Invalid(all, absl::StrCat("expected =, ==, !=, in or notin after "
                                       "\"",
                                       r.key, "\", got \"", rest, "\""));
    }
    rest = absl::StripAsciiWhitespace(rest);
    if (r.op == Op::kEquals || r.op == Op::kNotEquals) {
      if (std::string e = CheckValue(rest); !e.empty()) return Invalid(all, e);
      r.values.emplace_back(rest);
    } else if (r.op == Op::kIn || r.op == Op::kNotIn) {
      if (rest.size() < 2 || rest.front() != '(' || rest.back() != ')') {
        return Invalid(all, absl::StrCat("\"", r.key,
                                         " in/notin\" needs a list in "
                                         "parentheses: (a,b)"));
      }
      for (absl::string_view v :
           absl::StrSplit(rest.substr(1, rest.size() - 2), ',')) {
        v = absl::StripAsciiWhitespace(v);
        if (std::string e = CheckValue(v); !e.empty()) return Invalid(all, e);
        r.values.emplace_back(v);
      }
    }
    selector.requirements_.push_back(std::move(r));
  }
  return selector;
}

bool LabelSelector::Matches(const Labels& labels) const {
  for (const Requirement& r : requirements_) {
    auto it = labels.find(r.key);
    const bool has = it != labels.end();
    bool ok = false;
    switch (r.op) {
      case Op::kExists:
        ok = has;
        break;
      case Op::kNotExists:
        ok = !has;
        break;
      case Op::kEquals:
        ok = has && it->second == r.values[0];
        break;
      case Op::kNotEquals:
        ok = !has || it->second != r.values[0];
        break;
      case Op::kIn:
        ok = has && std::find(r.values.begin(), r.values.end(), it->second) !=
                        r.values.end();
        break;
      case Op::kNotIn:
        ok = !has || std::find(r.values.begin(), r.values.end(), it->second) ==
                         r.values.end();
        break;
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace pc
