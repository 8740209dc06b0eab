// `capturectl describe ID` and `capturectl list -o json|yaml`: one capture
// for a person (human sizes, ages, options, stop reason, files), and the
// captures as data (the proto's JSON mapping, or the same data as YAML).
// Pure functions of the messages and the current time.
#ifndef CLI_DESCRIBE_H_
#define CLI_DESCRIBE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/packetcapture.pb.h"

namespace pc::cli {

// "Name:   value" lines, then the files as a table.
std::string FormatDescribe(const packetcapture::v1::Capture& capture,
                           absl::Time now);

// {"captures": [...]} as ListCapturesResponse in the proto's JSON mapping
// with the proto field names (as grpcurl and `capturectl get` print them).
absl::StatusOr<std::string> CapturesToJson(
    const std::vector<packetcapture::v1::Capture>& captures);

// The same document as YAML (block style; strings double-quoted).
absl::StatusOr<std::string> CapturesToYaml(
    const std::vector<packetcapture::v1::Capture>& captures);

// Any JSON document as YAML; InvalidArgument when `json` does not parse.
absl::StatusOr<std::string> JsonToYaml(const std::string& json);

}  // namespace pc::cli

#endif  // CLI_DESCRIBE_H_
