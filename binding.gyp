{
  "variables": {
    "asan%": "0",
    # I/O engine: the io_uring backend is built only when liburing is found.
    "have_liburing%": "<!(pkg-config --exists liburing && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "mpath_watchdog",
      "sources": [
        "native/addon.cc",
        # dm control
        "native/dm_control.cc",
        "native/unix_socket.cc",
        # I/O engine
        "native/io/common.cc",
        "native/io/io_engine.cc",
        "native/io/thread_backend.cc",
        "native/io/uring_backend.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-Wall", "-Wextra", "-Werror"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Werror"],
      "conditions": [
        # I/O engine: liburing
        ["have_liburing==1", {
          # The version pkg-config reports, for diagnostics and tests
          # (liburing.h has no version macro before 2.4).
          "defines": ["MPW_HAVE_LIBURING", "MPW_LIBURING_VERSION=\"<!(pkg-config --modversion liburing)\""],
          "cflags_cc": ["<!@(pkg-config --cflags liburing)"],
          "libraries": ["<!@(pkg-config --libs liburing)"]
        }],
        ["asan==1", {
          "cflags": ["-fsanitize=address", "-fno-omit-frame-pointer"],
          "cflags_cc": ["-fsanitize=address", "-fno-omit-frame-pointer"],
          "ldflags": ["-fsanitize=address"]
        }]
      ]
    }
  ]
}
