#include "node_agent/capture_manager.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/time_proto.h"

namespace pc::agent {
namespace {

using CaptureProto = packetcapture::v1::Capture;

int64_t Reservation(int max_files) {
  return static_cast<int64_t>(max_files) * Budget::kBytesPerFile;
}

}  // namespace

int KillOrphanTcpdumps(const std::string& root, const std::string& proc_root) {
  int killed = 0;
  const std::string prefix = root + "/";
  DIR* d = opendir(proc_root.c_str());
  if (d == nullptr) return 0;
  while (struct dirent* e = readdir(d)) {
    const std::string pid = e->d_name;
    if (pid.empty() ||
        pid.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::ifstream in(absl::StrCat(proc_root, "/", pid, "/cmdline"),
                     std::ios::binary);
    std::stringstream raw;
    raw << in.rdbuf();
    std::vector<std::string> argv;
    std::string arg;
    for (char c : raw.str()) {
      if (c == '\0') {
        argv.push_back(arg);
        arg.clear();
      } else {
        arg.push_back(c);
      }
    }
    if (argv.empty() || !absl::EndsWith(argv[0], "tcpdump")) continue;
    for (size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == "-w" && absl::StartsWith(argv[i + 1], prefix)) {
        if (kill(std::stoi(pid), SIGKILL) == 0) ++killed;
        LogLine("orphan_tcpdump_killed", {{"pid", pid}, {"file", argv[i + 1]}});
        break;
      }
    }
  }
  closedir(d);
  return killed;
}

CaptureManager::CaptureManager(const CaptureEnv* env, Budget budget,
                               PodEventSink* events, CaptureRegistry* registry)
    : env_(env), budget_(budget), events_(events), registry_(registry) {}

CaptureManager::~CaptureManager() { Shutdown(); }

void CaptureManager::RecoverFromDisk() {
  KillOrphanTcpdumps(env_->root, "/proc");
  DIR* d = opendir(env_->root.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  for (const auto& name : names) {
    auto capture = Capture::Recover(env_, name);
    if (!capture.ok()) {
      LogLine("recover_skipped",
              {{"entry", name}, {"reason", capture.status().ToString()}});
      continue;
    }
    const std::string uid = (*capture)->spec().uid;
    LogLine("capture_recovered", {{"capture", name}});
    auto& slot = recovered_[uid];
    if (slot) {
      // Two directories for one pod: keep the newer, stop the older.
      if (slot->id() < (*capture)->id()) std::swap(slot, *capture);
      (*capture)->BeginStop(absl::Now());
      stopping_.push_back(std::move(*capture));
    } else {
      slot = std::move(*capture);
    }
  }
}

void CaptureManager::Reconcile(const std::map<std::string, Desired>& desired,
                               absl::Time now) {
  // Adopt recovered captures: as running entries with their old spec, so the
  // plan restarts, continues or stops them like any other capture.
  for (auto& [uid, capture] : recovered_) {
    Entry entry;
    entry.current.decision = Decision::kCapture;
    entry.current.spec = capture->spec();
    entry.capture = std::move(capture);
    entries_[uid] = std::move(entry);
  }
  const bool adopting = !recovered_.empty();
  recovered_.clear();

  std::map<std::string, CurrentCapture> current;
  for (const auto& [uid, entry] : entries_) current[uid] = entry.current;
  for (const auto& action : PlanReconcile(desired, current)) {
    LogLine("reconcile", {{"action", ActionName(action.type)},
                          {"uid", action.uid},
                          {"pod", absl::StrCat(action.desired.spec.ns, "/",
                                               action.desired.spec.pod)}});
    Apply(action, now);
  }
  if (adopting) {
    // Adopted captures the plan kept as they are still need a new run.
    for (auto& [uid, entry] : entries_) {
      if (entry.capture && entry.capture->idle()) {
        entry.capture->Start(now);
        ForwardNotes(entry.capture.get());
      }
    }
  }
  Publish();
}

void CaptureManager::Apply(const Action& action, absl::Time now) {
  switch (action.type) {
    case ActionType::kStop:
      StopEntry(action.uid, now,
                action.desired.pod_gone
                    ? packetcapture::v1::POD_GONE
                    : packetcapture::v1::ANNOTATION_REMOVED);
      break;
    case ActionType::kStart:
      // A PENDING/FAILED-only entry, if any.
      StopEntry(action.uid, now, packetcapture::v1::STOP_REASON_UNSPECIFIED);
      StartCapture(action.uid, action.desired, now);
      break;
    case ActionType::kRestart: {
      Entry& entry = entries_[action.uid];
      entry.current.spec = action.desired.spec;
      entry.current.decision = Decision::kCapture;
      entry.capture->Restart(action.desired.spec, now);
      ForwardNotes(entry.capture.get());
      break;
    }
    case ActionType::kShowPending:
      ShowOnly(action.uid, action.desired, CaptureProto::PENDING, now);
      break;
    case ActionType::kShowFailed:
      ShowOnly(action.uid, action.desired, CaptureProto::FAILED, now);
      break;
  }
}

void CaptureManager::StartCapture(const std::string& uid,
                                  const Desired& desired, absl::Time now) {
  // Budget: reservations of the captures that can write.
  int count = 0;
  int64_t reserved = 0;
  for (const auto& [other_uid, entry] : entries_) {
    if (entry.capture && !entry.capture->failed()) {
      ++count;
      reserved += Reservation(entry.current.spec.max_files);
    }
  }
  const int64_t need = Reservation(desired.spec.max_files);
  std::string over;
  if (count + 1 > budget_.max_captures) {
    over = absl::StrCat("node capture budget exhausted: ", count, " of ",
                        budget_.max_captures, " captures already running");
  } else if (reserved + need > budget_.max_bytes) {
    over = absl::StrCat("node disk budget exhausted: ", desired.spec.max_files,
                        " files need ", need, " bytes, ",
                        budget_.max_bytes - reserved, " of ", budget_.max_bytes,
                        " bytes left");
  }
  if (!over.empty()) {
    Desired refused = desired;
    refused.decision = Decision::kRefused;
    refused.reason = over;
    ShowOnly(uid, refused, CaptureProto::FAILED, now);
    return;
  }
  auto capture = Capture::Create(env_, desired.spec, now);
  if (!capture.ok()) {
    Desired failed = desired;
    failed.decision = Decision::kRefused;
    failed.reason = std::string(capture.status().message());
    ShowOnly(uid, failed, CaptureProto::FAILED, now);
    return;
  }
  Entry entry;
  entry.current.decision = Decision::kCapture;
  entry.current.spec = desired.spec;
  entry.capture = std::move(*capture);
  entry.capture->Start(now);
  ForwardNotes(entry.capture.get());
  entries_[uid] = std::move(entry);
}

void CaptureManager::StopEntry(const std::string& uid, absl::Time now,
                               packetcapture::v1::StopReason reason) {
  auto it = entries_.find(uid);
  if (it == entries_.end()) return;
  if (it->second.capture) {
    Capture* capture = it->second.capture.get();
    capture->BeginStop(now, reason);
    const char* why = reason == packetcapture::v1::POD_GONE ? " (pod gone)"
                      : reason == packetcapture::v1::ANNOTATION_REMOVED
                          ? " (annotation removed)"
                          : "";
    events_->PodEvent(capture->spec(), false, "CaptureStopped",
                      absl::StrCat("capture stopped", why,
                                   "; its files on the node are deleted"));
    stopping_.push_back(std::move(it->second.capture));
  }
  entries_.erase(it);
}

void CaptureManager::ShowOnly(const std::string& uid, const Desired& desired,
                              CaptureProto::State state, absl::Time now) {
  auto it = entries_.find(uid);
  const bool same_message = it != entries_.end() && !it->second.capture &&
                            it->second.shown.message() == desired.reason &&
                            it->second.shown.state() == state;
  if (it != entries_.end() && it->second.capture) {
    // The annotation turned invalid or the pod stopped running: the
    // capture ends and its files go (no stop reason fits).
    StopEntry(uid, now, packetcapture::v1::STOP_REASON_UNSPECIFIED);
  }
  Entry entry;
  entry.current.decision = desired.decision;
  entry.current.reason = desired.reason;
  entry.current.spec = desired.spec;
  CaptureProto& s = entry.shown;
  s.set_id(it != entries_.end() && !it->second.shown.id().empty()
               ? it->second.shown.id()
               : Capture::MakeId(desired.spec, now));
  s.set_node(env_->node);
  s.set_namespace_(desired.spec.ns);
  s.set_pod(desired.spec.pod);
  s.set_pod_uid(desired.spec.uid);
  s.set_pod_ip(desired.spec.ip);
  s.set_max_files(desired.spec.max_files);
  s.set_annotation(desired.spec.annotation);
  if (!desired.spec.options.empty()) {
    *s.mutable_options() = OptionsToProto(desired.spec.options);
  }
  s.mutable_pod_labels()->insert(desired.spec.labels.begin(),
                                 desired.spec.labels.end());
  s.set_state(state);
  s.set_message(desired.reason);
  *s.mutable_start_time() = ToProto(now);
  *s.mutable_update_time() = ToProto(now);
  s.set_on_node(true);
  entries_[uid] = std::move(entry);
  if (state == CaptureProto::FAILED && !same_message) {
    events_->PodEvent(desired.spec, true,
                      desired.decision == Decision::kInvalid ? "CaptureRejected"
                                                             : "CaptureFailed",
                      desired.reason);
  }
  LogLine(
      state == CaptureProto::FAILED ? "capture_rejected" : "capture_pending",
      {{"pod", absl::StrCat(desired.spec.ns, "/", desired.spec.pod)},
       {"reason", desired.reason}});
}

void CaptureManager::ForwardNotes(Capture* capture) {
  for (const auto& note : capture->TakeNotes()) {
    events_->PodEvent(capture->spec(), note.warning, note.reason, note.message);
  }
}

void CaptureManager::Tick(absl::Time now) {
  bool changed = false;
  for (auto& [uid, entry] : entries_) {
    if (!entry.capture) continue;
    changed |= entry.capture->Tick(now);
    ForwardNotes(entry.capture.get());
    // A capture failed for good keeps its reservation until the annotation
    // changes; its tcpdump is gone, so mark the plan's view.
    entry.current.failed = entry.capture->failed();
  }
  for (auto it = stopping_.begin(); it != stopping_.end();) {
    (*it)->Tick(now);
    if ((*it)->finished()) {
      auto deleted = (*it)->DeleteFiles();
      LogLine("capture_deleted",
              {{"capture", (*it)->id()},
               {"result", deleted.ok() ? "ok" : deleted.ToString()}});
      it = stopping_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  if (changed) Publish();
}

absl::Time CaptureManager::NextDeadline() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [uid, entry] : entries_) {
    if (entry.capture) next = std::min(next, entry.capture->NextDeadline());
  }
  // Stopping captures are polled closely: the files go as soon as tcpdump does.
  if (!stopping_.empty())
    next = std::min(next, absl::Now() + absl::Milliseconds(5));
  return next;
}

void CaptureManager::Publish() {
  std::vector<CaptureProto> all;
  for (const auto& [uid, entry] : entries_) {
    all.push_back(entry.capture ? entry.capture->Status() : entry.shown);
  }
  // Stopping captures stay listed, STOPPED with their reason, until their
  // files are deleted: the uplink forwards that last status.
  for (const auto& c : stopping_) {
    if (c->stop_reason() != packetcapture::v1::STOP_REASON_UNSPECIFIED) {
      all.push_back(c->Status());
    }
  }
  registry_->ReplaceAll(all);
}

void CaptureManager::Shutdown() {
  const absl::Time deadline = absl::Now() + env_->stop_grace;
  std::vector<Capture*> all;
  for (auto& [uid, entry] : entries_) {
    if (entry.capture) all.push_back(entry.capture.get());
  }
  for (auto& c : stopping_) all.push_back(c.get());
  for (Capture* c : all) c->BeginStop(absl::Now());
  for (Capture* c : all) {
    while (!c->finished() && absl::Now() < deadline + absl::Seconds(1)) {
      c->Tick(absl::Now());
      if (!c->finished()) absl::SleepFor(absl::Milliseconds(10));
    }
  }
  // Files of stopping captures are deleted; running ones are kept on disk.
  for (auto& c : stopping_) {
    if (c->finished()) c->DeleteFiles().IgnoreError();
  }
  stopping_.clear();
  entries_.clear();
}

int CaptureManager::active_captures() const {
  int n = 0;
  for (const auto& [uid, entry] : entries_) n += entry.capture ? 1 : 0;
  return n;
}

int64_t CaptureManager::reserved_bytes() const {
  int64_t total = 0;
  for (const auto& [uid, entry] : entries_) {
    if (entry.capture && !entry.capture->failed()) {
      total += Reservation(entry.current.spec.max_files);
    }
  }
  return total;
}

}  // namespace pc::agent
