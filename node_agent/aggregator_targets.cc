#include "node_agent/aggregator_targets.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pc::agent {
namespace {

bool ValidHostName(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(host, '.')) {
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
          c != '_') {
        return false;
      }
    }
  }
  return true;
}

bool ValidIpv6(absl::string_view host) {
  if (host.size() < 2 || host.size() > 47) return false;
  int colons = 0;
  for (char c : host) {
    if (c == ':') {
      ++colons;
    } else if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) &&
               c != '.') {
      return false;
    }
  }
  return colons >= 2;
}

}  // namespace

absl::Status ValidateHostPort(absl::string_view address) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregator address \"",
                     absl::CHexEscape(address.substr(0, 80)), "\": ", why));
  };
  if (address.size() > kMaxAddressBytes) return bad("too long");
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return bad("want host:port");
  absl::string_view host = address.substr(0, colon);
  absl::string_view port_text = address.substr(colon + 1);
  int port = 0;
  if (port_text.empty() || port_text.size() > 5 ||
      !absl::ascii_isdigit(static_cast<unsigned char>(port_text[0])) ||
      !absl::SimpleAtoi(port_text, &port) || port < 1 || port > 65535) {
    return bad("port must be 1..65535");
  }
  if (absl::ConsumePrefix(&host, "[")) {
    if (!absl::ConsumeSuffix(&host, "]") || !ValidIpv6(host))
      return bad("bad IPv6 address");
  } else if (!ValidHostName(host)) {
    return bad("bad host name");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ParseAggregatorList(
    absl::string_view list) {
  std::vector<std::string> out;
  for (absl::string_view entry : absl::StrSplit(list, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (absl::Status s = ValidateHostPort(entry); !s.ok()) return s;
    out.emplace_back(entry);
  }
  return out;
}

AggregatorTargets::AggregatorTargets(std::vector<std::string> list)
    : list_(std::move(list)) {}

const std::string& AggregatorTargets::Next() {
  redirected_ = !pending_.empty();
  if (redirected_) {
    current_ = std::move(pending_);
    pending_.clear();
  } else {
    current_ = list_[index_ % list_.size()];
  }
  return current_;
}

void AggregatorTargets::Failed() {
  // A failed redirect goes back to the list entry that sent it.
  if (!redirected_) index_ = (index_ + 1) % list_.size();
  redirected_ = false;
}

bool AggregatorTargets::Redirect(absl::string_view address) {
  if (redirected_ || !ValidateHostPort(address).ok()) {
    Failed();
    return false;
  }
  pending_ = std::string(address);
  return true;
}

}  // namespace pc::agent
