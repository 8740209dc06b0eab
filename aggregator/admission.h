// Admission of ingest streams that have not authenticated yet: at most so
// many in total and per peer address, so that strangers can hold only a
// bounded number of streams (each costing at most one message of gRPC's
// receive limit) and token reviews. Thread-safe.
#ifndef AGGREGATOR_ADMISSION_H_
#define AGGREGATOR_ADMISSION_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace pc::aggregator {

// The address part of a gRPC peer URI: "ipv4:10.0.0.1:5000" -> "ipv4:10.0.0.1",
// "ipv6:[fd00::1]:5000" -> "ipv6:[fd00::1]". Anything else is kept whole.
std::string PeerAddress(absl::string_view peer);

class AdmissionControl {
 public:
  // Holds one slot until Release() or destruction. Movable.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept { *this = std::move(other); }
    Ticket& operator=(Ticket&& other) noexcept;
    ~Ticket() { Release(); }
    void Release();
    bool held() const { return owner_ != nullptr; }

   private:
    friend class AdmissionControl;
    AdmissionControl* owner_ = nullptr;
    std::string address_;
  };

  AdmissionControl(int max_total, int max_per_peer)
      : max_total_(max_total), max_per_peer_(max_per_peer) {}

  // A slot for a stream from `peer` (a gRPC peer URI), or
  // ResourceExhaustedError when its address or everyone is at the limit.
  absl::StatusOr<Ticket> Admit(absl::string_view peer);

  int total() const;

 private:
  void Release(const std::string& address);

  const int max_total_;
  const int max_per_peer_;
  mutable absl::Mutex mu_;
  int total_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int> per_peer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_ADMISSION_H_
