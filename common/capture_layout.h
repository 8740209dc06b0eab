// Names of a capture's directories, shared by the agent (which creates them)
// and the aggregator (which mirrors them): the capture id and the run
// directory of one tcpdump start. Both become path components, so both are
// validated here before anyone builds a path from them.
#ifndef COMMON_CAPTURE_LAYOUT_H_
#define COMMON_CAPTURE_LAYOUT_H_

#include <cstdint>
#include <string>

namespace pc {

// "<namespace>_<pod>_<uid prefix (8 hex)>_<start ms>": readable, unique per
// start, and a safe directory name because every part is validated.
std::string MakeCaptureId(const std::string& ns, const std::string& pod,
                          const std::string& uid, int64_t start_ms);
bool IsValidCaptureId(const std::string& id);

// "run-<k>-w<N>": the k-th tcpdump start (k >= 1) of a capture, ring of N
// files. Parse is strict: only what RunDirName produces is accepted.
std::string RunDirName(int run, int max_files);
bool ParseRunDirName(const std::string& name, int* run, int* max_files);

}  // namespace pc

#endif  // COMMON_CAPTURE_LAYOUT_H_
