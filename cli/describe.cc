#include "cli/describe.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/format.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace pc::cli {
namespace {

using google::protobuf::Value;
using packetcapture::v1::Capture;

std::string When(const google::protobuf::Timestamp& t, absl::Time now) {
  absl::Time time = ToTime(t);
  return absl::StrCat(
      absl::FormatTime("%Y-%m-%d %H:%M:%S %Z", time, absl::UTCTimeZone()), " (",
      HumanAgo(time, now), ")");
}

// A JSON string as a YAML double-quoted scalar: the JSON escapes are valid
// YAML escapes.
std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string Scalar(const Value& v) {
  switch (v.kind_case()) {
    case Value::kNullValue:
      return "null";
    case Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case Value::kNumberValue: {
      double d = v.number_value();
      if (std::floor(d) == d && std::fabs(d) < 1e15) {
        return absl::StrCat(static_cast<int64_t>(d));
      }
      return absl::StrCat(d);
    }
    case Value::kStringValue:
      return Quoted(v.string_value());
    default:
      return "null";
  }
}

bool IsEmptyCollection(const Value& v) {
  return (v.has_struct_value() && v.struct_value().fields().empty()) ||
         (v.has_list_value() && v.list_value().values().empty());
}

void Emit(const Value& v, int indent, std::string* out);

// `prefix` is what goes before the value on its first line ("key:" or "-").
void EmitEntry(const std::string& prefix, const Value& v, int indent,
               std::string* out) {
  std::string pad(static_cast<size_t>(indent), ' ');
  if (IsEmptyCollection(v)) {
    absl::StrAppend(out, pad, prefix, v.has_struct_value() ? " {}" : " []",
                    "\n");
  } else if (v.has_struct_value() || v.has_list_value()) {
    absl::StrAppend(out, pad, prefix, "\n");
    Emit(v, indent + 2, out);
  } else {
    absl::StrAppend(out, pad, prefix, " ", Scalar(v), "\n");
  }
}

void Emit(const Value& v, int indent, std::string* out) {
  if (v.has_struct_value()) {
    // Protobuf's Struct map has no order: sort the keys for a stable output.
    std::vector<std::string> keys;
    for (const auto& [key, unused] : v.struct_value().fields()) {
      keys.push_back(key);
    }
    std::sort(keys.begin(), keys.end());
    for (const std::string& key : keys) {
      EmitEntry(absl::StrCat(Quoted(key), ":"),
                v.struct_value().fields().at(key), indent, out);
    }
  } else if (v.has_list_value()) {
    for (const Value& item : v.list_value().values()) {
      EmitEntry("-", item, indent, out);
    }
  } else {
    absl::StrAppend(out, std::string(static_cast<size_t>(indent), ' '),
                    Scalar(v), "\n");
  }
}

}  // namespace

std::string FormatDescribe(const Capture& c, absl::Time now) {
  std::vector<std::pair<std::string, std::string>> rows;
  auto row = [&](const char* name, std::string value) {
    rows.emplace_back(name, std::move(value));
  };
  row("ID", Printable(c.id(), 256));
  row("Pod", Printable(absl::StrCat(c.namespace_(), "/", c.pod()), 320));
  row("Pod UID", c.pod_uid().empty() ? "-" : Printable(c.pod_uid(), 64));
  row("Pod IP", c.pod_ip().empty() ? "-" : Printable(c.pod_ip(), 45));
  row("Node", Printable(c.node(), 63));
  row("Interface", c.interface().empty() ? "-" : Printable(c.interface(), 64));
  std::string state = c.state() == Capture::STATE_UNSPECIFIED
                          ? "-"
                          : Capture::State_Name(c.state());
  if (c.state() == Capture::STOPPED) {
    absl::StrAppend(&state, " (", StopReasonName(c.stop_reason()), ")");
  }
  row("State", state);
  if (!c.message().empty()) row("Message", Printable(c.message(), 500));
  row("Annotation",
      absl::StrCat("tcpdump.antrea.io=\"", Printable(c.annotation(), 64),
                   "\" (keep ", c.max_files(), " files of 1 MB)"));
  row("Options", FormatCaptureOptions(c.options()));
  row("Started", c.has_start_time() ? When(c.start_time(), now) : "-");
  if (c.has_stop_time()) row("Stopped", When(c.stop_time(), now));
  row("Size",
      absl::StrCat(HumanBytes(c.bytes()), " in ", c.files_size(), " of ",
                   c.max_files(), " files, ", c.packets(), " packets"));
  row("Dropped",
      absl::StrCat(c.dropped_packets(), " packets (counted by tcpdump)"));
  row("Uploaded", HumanBytes(c.bytes_uploaded()));
  if (c.bytes_lost() > 0) {
    row("Lost",
        absl::StrCat(HumanBytes(c.bytes_lost()), " overwritten before upload"));
  }
  row("Restarts", absl::StrCat(c.restarts()));
  if (!c.pod_labels().empty()) {
    std::vector<std::string> labels;
    for (const auto& [k, v] : c.pod_labels()) {
      labels.push_back(Printable(absl::StrCat(k, "=", v), 320));
    }
    std::sort(labels.begin(), labels.end());
    row("Labels", absl::StrJoin(labels, ","));
  }
  if (c.has_expire_time()) {
    row("Kept until",
        absl::StrCat(
            absl::FormatTime("%Y-%m-%d %H:%M:%S %Z", ToTime(c.expire_time()),
                             absl::UTCTimeZone()),
            c.on_node() ? "" : " (the aggregator's copy only)"));
  }
  std::string out;
  for (const auto& [name, value] : rows) {
    absl::StrAppendFormat(&out, "%-12s%s\n", absl::StrCat(name, ":"), value);
  }
  if (c.files_size() > 0) {
    absl::StrAppend(&out, "Files:\n");
    absl::StrAppendFormat(&out, "  %-10s %10s %9s  %s\n", "NAME", "SIZE",
                          "PACKETS", "LAST PACKET");
    for (const auto& f : c.files()) {
      absl::StrAppendFormat(
          &out, "  %-10s %10s %9d  %s%s\n", Printable(f.name(), 64),
          HumanBytes(f.size()), f.packets(),
          f.has_last_packet_time() ? HumanAgo(ToTime(f.last_packet_time()), now)
                                   : "-",
          f.active() ? " (writing)" : "");
    }
  }
  return out;
}

absl::StatusOr<std::string> CapturesToJson(
    const std::vector<Capture>& captures) {
  packetcapture::v1::ListCapturesResponse list;
  for (const Capture& c : captures) *list.add_captures() = c;
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = false;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(list, &json, print);
  if (!status.ok()) {
    return absl::InternalError("cannot print the captures as JSON");
  }
  // An empty list prints as {}: say "captures": [] so scripts find the key.
  if (captures.empty()) json = "{\n \"captures\": []\n}\n";
  return json;
}

absl::StatusOr<std::string> JsonToYaml(const std::string& json) {
  Value value;
  if (!google::protobuf::util::JsonStringToMessage(json, &value).ok()) {
    return absl::InvalidArgumentError("not JSON");
  }
  std::string out;
  Emit(value, 0, &out);
  return out;
}

absl::StatusOr<std::string> CapturesToYaml(
    const std::vector<Capture>& captures) {
  absl::StatusOr<std::string> json = CapturesToJson(captures);
  if (!json.ok()) return json.status();
  return JsonToYaml(*json);
}

}  // namespace pc::cli
