#include "common/s3/xml_reader.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace pc::s3 {
namespace {

bool NameChar(char c) {
  return absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.' ||
         c == ':' || static_cast<unsigned char>(c) >= 0x80;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

class Parser {
 public:
  explicit Parser(absl::string_view in) : in_(in) {}

  absl::StatusOr<XmlElement> Document() {
    if (auto s = SkipMisc(); !s.ok()) return s;
    if (!Peek("<")) return Error("no root element");
    XmlElement root;
    if (auto s = Element(0, &root); !s.ok()) return s;
    if (auto s = SkipMisc(); !s.ok()) return s;
    if (pos_ != in_.size()) return Error("content after the root element");
    return root;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("XML: ", what, " at byte ", pos_));
  }
  bool Peek(absl::string_view s) const {
    return absl::StartsWith(in_.substr(pos_), s);
  }
  void SkipSpace() {
    while (pos_ < in_.size() &&
           absl::ascii_isspace(static_cast<unsigned char>(in_[pos_]))) {
      ++pos_;
    }
  }
  // Moves past `end`, which must come later.
  absl::Status SkipPast(absl::string_view end) {
    size_t at = in_.find(end, pos_);
    if (at == absl::string_view::npos) {
      return Error(absl::StrCat("missing '", end, "'"));
    }
    pos_ = at + end.size();
    return absl::OkStatus();
  }
  // Whitespace, comments and processing instructions between elements.
  absl::Status SkipMisc() {
    for (;;) {
      SkipSpace();
      if (Peek("<?")) {
        if (auto s = SkipPast("?>"); !s.ok()) return s;
      } else if (Peek("<!--")) {
        if (auto s = SkipPast("-->"); !s.ok()) return s;
      } else if (Peek("<!")) {
        return Error("DOCTYPE and declarations are not accepted");
      } else {
        return absl::OkStatus();
      }
    }
  }
  absl::Status Name(std::string* name) {
    size_t start = pos_;
    while (pos_ < in_.size() && NameChar(in_[pos_])) ++pos_;
    if (pos_ == start) return Error("expected a name");
    absl::string_view full = in_.substr(start, pos_ - start);
    size_t colon = full.rfind(':');
    *name = std::string(
        colon == absl::string_view::npos ? full : full.substr(colon + 1));
    if (name->empty()) return Error("empty local name");
    return absl::OkStatus();
  }
  // Attributes are not needed (xmlns only); skipped with their quoting.
  absl::Status SkipAttributes() {
    for (;;) {
      SkipSpace();
      if (pos_ >= in_.size()) return Error("unterminated tag");
      char c = in_[pos_];
      if (c == '>' || c == '/') return absl::OkStatus();
      std::string ignored;
      if (auto s = Name(&ignored); !s.ok()) return s;
      SkipSpace();
      if (!Peek("=")) return Error("attribute without '='");
      ++pos_;
      SkipSpace();
      if (pos_ >= in_.size() || (in_[pos_] != '"' && in_[pos_] != '\'')) {
        return Error("unquoted attribute value");
      }
      char quote = in_[pos_++];
      size_t end = in_.find(quote, pos_);
      if (end == absl::string_view::npos) return Error("unterminated value");
      pos_ = end + 1;
    }
  }
  // At '&': appends the decoded character.
  absl::Status Entity(std::string* out) {
    size_t semi = in_.find(';', pos_);
    if (semi == absl::string_view::npos || semi - pos_ > 12) {
      return Error("unterminated entity");
    }
    absl::string_view name = in_.substr(pos_ + 1, semi - pos_ - 1);
    pos_ = semi + 1;
    if (name == "amp") {
      out->push_back('&');
    } else if (name == "lt") {
      out->push_back('<');
    } else if (name == "gt") {
      out->push_back('>');
    } else if (name == "quot") {
      out->push_back('"');
    } else if (name == "apos") {
      out->push_back('\'');
    } else if (absl::ConsumePrefix(&name, "#")) {
      uint32_t cp = 0;
      bool ok = absl::ConsumePrefix(&name, "x") ? absl::SimpleHexAtoi(name, &cp)
                                                : absl::SimpleAtoi(name, &cp);
      if (!ok || name.empty() || !absl::ascii_isxdigit(name[0]) || cp == 0 ||
          cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return Error("bad character reference");
      }
      AppendUtf8(cp, out);
    } else {
      return Error("unknown entity");
    }
    return absl::OkStatus();
  }
  // At '<' of a start tag.
  absl::Status Element(int depth, XmlElement* element) {
    if (depth >= kMaxXmlDepth) return Error("nested too deeply");
    if (++elements_ > kMaxXmlElements) return Error("too many elements");
    ++pos_;
    if (auto s = Name(&element->name); !s.ok()) return s;
    if (auto s = SkipAttributes(); !s.ok()) return s;
    if (Peek("/>")) {
      pos_ += 2;
      return absl::OkStatus();
    }
    ++pos_;  // '>'
    for (;;) {
      if (pos_ >= in_.size()) return Error("unterminated element");
      char c = in_[pos_];
      if (c == '&') {
        if (auto s = Entity(&element->text); !s.ok()) return s;
      } else if (c != '<') {
        element->text.push_back(c);
        ++pos_;
      } else if (Peek("</")) {
        pos_ += 2;
        std::string end;
        if (auto s = Name(&end); !s.ok()) return s;
        if (end != element->name) return Error("mismatched end tag");
        SkipSpace();
        if (!Peek(">")) return Error("expected '>'");
        ++pos_;
        return absl::OkStatus();
      } else if (Peek("<![CDATA[")) {
        size_t start = pos_ + 9;
        size_t end = in_.find("]]>", start);
        if (end == absl::string_view::npos) return Error("unterminated CDATA");
        element->text.append(in_.data() + start, end - start);
        pos_ = end + 3;
      } else if (Peek("<!--")) {
        if (auto s = SkipPast("-->"); !s.ok()) return s;
      } else if (Peek("<?")) {
        if (auto s = SkipPast("?>"); !s.ok()) return s;
      } else if (Peek("<!")) {
        return Error("declaration inside an element");
      } else {
        element->children.emplace_back();
        if (auto s = Element(depth + 1, &element->children.back()); !s.ok()) {
          return s;
        }
      }
    }
  }

  absl::string_view in_;
  size_t pos_ = 0;
  size_t elements_ = 0;
};

}  // namespace

const XmlElement* XmlElement::Child(absl::string_view child) const {
  for (const XmlElement& c : children) {
    if (c.name == child) return &c;
  }
  return nullptr;
}

std::string XmlElement::ChildText(absl::string_view child) const {
  const XmlElement* c = Child(child);
  return c == nullptr ? "" : c->text;
}

absl::StatusOr<XmlElement> ParseXml(absl::string_view document) {
  return Parser(document).Document();
}

}  // namespace pc::s3
