#include "aggregator/admission.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace pc::aggregator {

std::string PeerAddress(absl::string_view peer) {
  if (absl::StartsWith(peer, "ipv4:") || absl::StartsWith(peer, "ipv6:")) {
    const size_t colon = peer.rfind(':');
    // "ipv6:[::1]:5" ends in "]:<port>"; "ipv4:a.b.c.d:5" has its second ':'.
    if (colon != absl::string_view::npos && colon > 4) {
      return std::string(peer.substr(0, colon));
    }
  }
  return std::string(peer);
}

AdmissionControl::Ticket& AdmissionControl::Ticket::operator=(
    Ticket&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    address_ = std::move(other.address_);
  }
  return *this;
}

void AdmissionControl::Ticket::Release() {
  if (owner_ == nullptr) return;
  std::exchange(owner_, nullptr)->Release(address_);
}

absl::StatusOr<AdmissionControl::Ticket> AdmissionControl::Admit(
    absl::string_view peer) {
  std::string address = PeerAddress(peer);
  absl::MutexLock lock(&mu_);
  if (total_ >= max_total_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many streams waiting for authentication (",
                     max_total_, "); retry later"));
  }
  int& mine = per_peer_[address];
  if (mine >= max_per_peer_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many streams from ", address, " waiting for authentication (",
        max_per_peer_, "); retry later"));
  }
  ++mine;
  ++total_;
  Ticket ticket;
  ticket.owner_ = this;
  ticket.address_ = std::move(address);
  return ticket;
}

void AdmissionControl::Release(const std::string& address) {
  absl::MutexLock lock(&mu_);
  --total_;
  auto it = per_peer_.find(address);
  if (it != per_peer_.end() && --it->second <= 0) per_peer_.erase(it);
}

int AdmissionControl::total() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

}  // namespace pc::aggregator
