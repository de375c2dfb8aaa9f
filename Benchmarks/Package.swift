// swift-tools-version:6.1
import PackageDescription

// Microbenchmarks of the datapath's pure-Swift core (parse + rewrite, RedirectEngine.process,
// flow table at 10k/100k/1M flows), with malloc counts. A package of its own so the main build
// and CI never compile the benchmark framework. Run: `make microbench` (see docs/performance.md).
let package = Package(
    name: "nfq-redirect-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "nfq-redirect", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Datapath",
            dependencies: [
                .product(name: "RedirectCore", package: "nfq-redirect"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Datapath",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ],
    swiftLanguageModes: [.v5]
)
