#include "common/peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace pc {

bool IsLoopbackPeer(absl::string_view peer) {
  if (absl::StartsWith(peer, "unix:") ||
      absl::StartsWith(peer, "unix-abstract:")) {
    return true;
  }
  if (absl::ConsumePrefix(&peer, "ipv4:")) {
    size_t colon = peer.rfind(':');
    if (colon == absl::string_view::npos) return false;
    std::string host(peer.substr(0, colon));
    in_addr addr;
    if (inet_pton(AF_INET, host.c_str(), &addr) != 1) return false;
    return (ntohl(addr.s_addr) >> 24) == 127;
  }
  if (absl::ConsumePrefix(&peer, "ipv6:")) {
    std::string unescaped = absl::StrReplaceAll(
        peer, {{"%5B", "["}, {"%5D", "]"}, {"%5b", "["}, {"%5d", "]"}});
    absl::string_view rest = unescaped;
    if (!absl::ConsumePrefix(&rest, "[")) return false;
    size_t close = rest.find(']');
    if (close == absl::string_view::npos) return false;
    std::string host(rest.substr(0, close));
    size_t zone = host.find('%');  // fe80::1%eth0
    if (zone != std::string::npos) host.resize(zone);
    in6_addr addr;
    if (inet_pton(AF_INET6, host.c_str(), &addr) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&addr) && addr.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace pc
