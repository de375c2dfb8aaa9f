// swift-tools-version:6.1
import PackageDescription

// Layers, innermost first (each may only import the ones above it):
//   RedirectCore      pure Swift: packet views, checksums, flow table, policy, NAT engine, lookup codec
//   CNetfilterQueue   system libraries libnetfilter_queue + libmnl
//   CConntrack        C shim over libnetfilter_conntrack (conntrack event and dump mark filters)
//   CNetlinkAttributes, CSystemCalls   small C shims: netlink attribute walks; libc calls Swift's Glibc lacks
//   SystemCalls       the one system-call layer (errno policy, descriptors, wake-ups, Unix socket addresses)
//   Kernel            the kernel boundary (NFQUEUE sockets, rtnetlink addresses, iptables) behind protocols
//   KernelTesting     in-memory fakes of those protocols, for tests only (the daemon does not link it)
//   Daemon            wiring: datapath threads, lookup server, config, metrics, state store, sd_notify
//   nfq-redirectd / nfq-redirect   thin mains
// The LD_PRELOAD library (Sources/CPreload) is plain C built by the Makefile, so no Swift runtime
// is loaded into the proxies it is preloaded into.
let package = Package(
    name: "nfq-redirect",
    products: [
        .executable(name: "nfq-redirectd", targets: ["nfq-redirectd"]),
        .executable(name: "nfq-redirect", targets: ["nfq-redirect"]),
        .library(name: "NFQRedirectClient", targets: ["NFQRedirectClient"]),
        // For the benchmark and fuzzing packages beside this one (Benchmarks/, Fuzz/).
        .library(name: "RedirectCore", targets: ["RedirectCore"]),
        .library(name: "Daemon", targets: ["Daemon"]),
        .library(name: "Kernel", targets: ["Kernel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        // Tests only: counts mallocs, so a test fails on any allocation in the per-packet path.
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.1"),
    ],
    targets: [
        .target(name: "RedirectCore"),
        .systemLibrary(
            name: "CNetfilterQueue",
            pkgConfig: "libnetfilter_queue",
            providers: [.apt(["libnetfilter-queue-dev", "libnfnetlink-dev", "libmnl-dev"])]
        ),
        // libnetfilter_conntrack (Debian libnetfilter-conntrack-dev) behind a stdint-only header:
        // a second system module of netfilter headers beside CNetfilterQueue breaks clean builds
        // (Sources/CConntrack/include/nfqr_conntrack.h says how).
        .target(
            name: "CConntrack",
            linkerSettings: [.linkedLibrary("netfilter_conntrack"), .linkedLibrary("nfnetlink"), .linkedLibrary("mnl")]
        ),
        // C shims by purpose, every symbol prefixed `nfqr_`: netlink attribute walks over
        // kernel-filled buffers, and the libc calls the Glibc module does not export.
        .target(name: "CNetlinkAttributes"),
        .target(name: "CSystemCalls"),
        // The one system-call layer (modelled on swift-nio's and swift-system's): every module's
        // EINTR/EAGAIN policy, descriptor helpers, the eventfd wake-up, sockaddr_un and SCM_RIGHTS.
        .target(name: "SystemCalls", dependencies: ["CSystemCalls"]),
        // The cgroup/getsockopt program (bpf/, compiled by `make bpf` with clang -target bpf
        // into generated/, embedded by bpftool's skeleton) and its libbpf loader.
        .target(
            name: "CNativeAnswers",
            exclude: ["bpf"],
            linkerSettings: [.linkedLibrary("bpf")]
        ),
        .target(
            name: "Kernel",
            dependencies: [
                "RedirectCore", "SystemCalls", "CNetfilterQueue", "CConntrack", "CNetlinkAttributes", "CSystemCalls",
                "CNativeAnswers",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Fakes of the kernel boundary (like swift-nio's NIOEmbedded): only test targets depend on it.
        .target(name: "KernelTesting", dependencies: ["Kernel", "RedirectCore", "SystemCalls"]),
        // The seeded generator of the property tests, for the test targets only.
        .target(name: "SeededRandom"),
        .target(
            name: "Daemon",
            dependencies: [
                "RedirectCore", "Kernel", "NFQRedirectClient", "SystemCalls", "CSystemCalls",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(name: "NFQRedirectClient", dependencies: ["RedirectCore", "SystemCalls"]),
        .executableTarget(
            name: "nfq-redirectd",
            dependencies: ["Daemon", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "nfq-redirect",
            dependencies: [
                "Daemon", "NFQRedirectClient", "Kernel", "RedirectCore", "SystemCalls",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "RedirectCoreTests",
            dependencies: ["RedirectCore", "SeededRandom", .product(name: "MallocInterposerSwift", package: "malloc-interposer")]
        ),
        .testTarget(
            name: "KernelTests", dependencies: ["Kernel", "KernelTesting", "SeededRandom", "SystemCalls", "CNetfilterQueue", "CSystemCalls"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "KernelTesting", "NFQRedirectClient", "SystemCalls"]),
    ],
    swiftLanguageModes: [.v5]
)
