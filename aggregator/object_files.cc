#include "aggregator/object_files.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/pcap/pcap_format.h"

namespace pc::aggregator {

absl::StatusOr<std::vector<s3::ObjectInfo>> ListAll(s3::ObjectClient* client,
                                                    const std::string& prefix) {
  std::vector<s3::ObjectInfo> out;
  std::string token;
  do {
    auto page = client->List(prefix, "", token);
    if (!page.ok()) return page.status();
    for (auto& o : page->objects) out.push_back(std::move(o));
    token = page->next_token;
  } while (!token.empty());
  return out;
}

namespace {

absl::StatusOr<FileObjects> ListUnder(s3::ObjectClient* client,
                                      const ObjectLayout& layout,
                                      const std::string& id,
                                      const std::string& prefix) {
  auto listed = ListAll(client, prefix);
  if (!listed.ok()) return listed.status();
  FileObjects files;
  for (const s3::ObjectInfo& o : *listed) {
    DataKeyParts parts;
    if (o.size == 0 || !layout.ParseDataKey(id, o.key, &parts)) continue;
    if (parts.end != 0 && parts.end - parts.offset != o.size) continue;
    files[{parts.file, parts.generation}].push_back(
        DataObject{o.key, parts.offset, o.size});
  }
  for (auto& [key, objects] : files) {
    std::sort(objects.begin(), objects.end(),
              [](const DataObject& a, const DataObject& b) {
                return std::make_tuple(a.offset, b.size, a.key) <
                       std::make_tuple(b.offset, a.size, b.key);
              });
  }
  return files;
}

}  // namespace

absl::StatusOr<FileObjects> ListFileObjects(s3::ObjectClient* client,
                                            const ObjectLayout& layout,
                                            const std::string& id) {
  return ListUnder(client, layout, id, layout.DataPrefix(id));
}

absl::StatusOr<std::vector<DataObject>> ListFileObjectsOf(
    s3::ObjectClient* client, const ObjectLayout& layout, const std::string& id,
    const FileKey& file) {
  auto files = ListUnder(client, layout, id,
                         layout.FilePrefix(id, file.first, file.second));
  if (!files.ok()) return files.status();
  auto it = files->find(file);
  if (it == files->end()) return std::vector<DataObject>();
  return std::move(it->second);
}

absl::Status ScanObjects(s3::ObjectClient* client,
                         const std::vector<DataObject>& objects,
                         FileSummary* s) {
  for (const DataObject& o : objects) {
    const uint64_t end = o.offset + o.size;
    if (end <= s->logical_len) continue;
    // Bytes past the known end; a gap when the object starts beyond it.
    const uint64_t from = std::max(o.offset, s->logical_len);
    std::string carry;  // an incomplete record between two ranges
    for (uint64_t pos = from - o.offset; pos < o.size;) {
      const uint64_t n = std::min<uint64_t>(kObjectReadBytes, o.size - pos);
      auto got = client->Get(o.key, pos, n);
      if (!got.ok()) return got.status();
      if (got->body.empty()) {
        return absl::DataLossError(absl::StrCat(o.key, " shrank"));
      }
      pos += got->body.size();
      carry += got->body;
      absl::string_view data = carry;
      if (!s->header) {
        if (data.size() < pcap::kGlobalHeaderSize) continue;
        auto header = pcap::ParseGlobalHeader(data);
        if (!header.ok()) {
          return absl::DataLossError(
              absl::StrCat(o.key, ": ", header.status().message()));
        }
        s->header = *header;
        s->physical_len += pcap::kGlobalHeaderSize;
        data.remove_prefix(pcap::kGlobalHeaderSize);
      }
      const pcap::ScanResult scan = pcap::ScanRecords(*s->header, data);
      if (scan.corrupt()) {
        return absl::DataLossError(
            absl::StrCat(o.key, ": ", scan.status.message()));
      }
      s->packets += scan.records;
      if (!s->first_time) s->first_time = scan.first_time;
      if (scan.last_time) s->last_time = scan.last_time;
      s->physical_len += scan.complete_bytes;
      carry = std::string(data.substr(scan.complete_bytes));
    }
    if (!carry.empty()) {
      return absl::DataLossError(
          absl::StrCat(o.key, " ends inside a pcap record"));
    }
    s->logical_len = end;
  }
  return absl::OkStatus();
}

}  // namespace pc::aggregator
