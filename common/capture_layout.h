// Names of a capture's directories, shared by the agent (which creates them)
// and the aggregator (which mirrors them): the capture id and the run
// directory of one tcpdump start. Both become path components, so both are
// validated here before anyone builds a path from them.
#ifndef COMMON_CAPTURE_LAYOUT_H_
#define COMMON_CAPTURE_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace pc {

// Ids MakeCaptureId() produces are at most this long, whatever the names: a
// directory name (NAME_MAX is 255) with room to spare, and short enough for
// capturectl to use "<id>.pcap" as a file name.
inline constexpr size_t kMaxCaptureIdBytes = 200;

// "<namespace>_<pod>_<uid prefix (8 hex)>_<start ms>": readable, unique per
// start, and a safe directory name because every part is validated. When
// that would exceed kMaxCaptureIdBytes (a namespace is at most 63 bytes, a
// pod name 253), the pod part becomes "<start of the pod name>-<12 hex of a
// 64-bit FNV-1a digest of the full pod name>", itself a DNS subdomain, so the
// id still names the pod to a reader and stays unique per name. The full
// names travel in the capture's status, never parsed back from the id.
std::string MakeCaptureId(const std::string& ns, const std::string& pod,
                          const std::string& uid, int64_t start_ms);
// True for every id MakeCaptureId() produces and for the longer ids older
// agents produced ("<label>_<subdomain>_<8 hex>_<ms>" of any length up to
// NAME_MAX, 255 bytes); false for anything that cannot be a directory name.
bool IsValidCaptureId(const std::string& id);

// "run-<k>-w<N>": the k-th tcpdump start (k >= 1) of a capture, ring of N
// files. Parse is strict: only what RunDirName produces is accepted.
std::string RunDirName(int run, int max_files);
bool ParseRunDirName(const std::string& name, int* run, int* max_files);

}  // namespace pc

#endif  // COMMON_CAPTURE_LAYOUT_H_
