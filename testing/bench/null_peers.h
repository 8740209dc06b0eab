// The aggregator's peers in the benchmarks, served by ingest_bench (see its
// usage comment). Each returns the process's exit code (2: bad arguments)
// and serves until killed.
#ifndef TESTING_BENCH_NULL_PEERS_H_
#define TESTING_BENCH_NULL_PEERS_H_

namespace pc::bench {

// null-server PORT [DOWNLOAD_FILE MESSAGE_BYTES]
int NullServer(int argc, char** argv);
// null-writer PORT DIR [BATCH_BYTES BATCH_DELAY_MS]
int NullWriter(int argc, char** argv);
// null-putter PORT ENDPOINT CREDENTIALS BUCKET PREFIX
//             [BATCH_BYTES BATCH_DELAY_MS]
int NullPutter(int argc, char** argv);

}  // namespace pc::bench

#endif  // TESTING_BENCH_NULL_PEERS_H_
