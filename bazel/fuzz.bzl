"""libFuzzer targets that also run as ordinary tests.

cc_fuzz_test(name = "foo_fuzz", srcs = ["foo_fuzz.cc"], deps = [...]) makes:
  foo_fuzz         a cc_test that feeds every file of the seed corpus
                   testdata/fuzz/foo_fuzz/ (beside the BUILD file) to
                   LLVMFuzzerTestOneInput, built by the normal toolchain
                   (gcc; ASan+UBSan under --config=asan);
  foo_fuzz_fuzzer  the libFuzzer binary, tagged manual: it needs clang,
                   `bazel build --config=fuzz` (testing/fuzz.sh runs it).
"""

def cc_fuzz_test(name, srcs, deps = [], size = "small", tags = [], **kwargs):
    """See the module docstring.

    Args:
      name: the test's name; the corpus is testdata/fuzz/<name>/.
      srcs: sources defining LLVMFuzzerTestOneInput (and optionally
        LLVMFuzzerInitialize).
      deps: their dependencies.
      size: of the corpus test.
      tags: extra tags of the corpus test.
      **kwargs: forwarded to both the test and the fuzzer binary.
    """
    corpus = "testdata/fuzz/" + name
    native.cc_library(
        name = name + "_lib",
        testonly = True,
        srcs = srcs,
        deps = deps + ["//testing/fuzz:fuzz_util"],
        alwayslink = True,
    )
    native.cc_test(
        name = name,
        size = size,
        args = [native.package_name() + "/" + corpus],
        data = native.glob([corpus + "/**"]),
        tags = tags + ["fuzz-corpus"],
        deps = [
            ":" + name + "_lib",
            "//testing/fuzz:corpus_main",
        ],
        **kwargs
    )
    native.cc_binary(
        name = name + "_fuzzer",
        testonly = True,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual", "fuzzer"],
        deps = [":" + name + "_lib"],
        **kwargs
    )
