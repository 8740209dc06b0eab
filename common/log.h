// One log line per event, machine-parseable: `ts=... event=... key="value"`.
// Values are quoted and escaped so pod names or tcpdump output cannot forge
// fields or lines. Thread-safe (one write(2) per line).
#ifndef COMMON_LOG_H_
#define COMMON_LOG_H_

#include <string>
#include <utility>
#include <vector>

namespace pc {

void LogLine(const std::string& event,
             const std::vector<std::pair<std::string, std::string>>& fields);

}  // namespace pc

#endif  // COMMON_LOG_H_
