// swift-tools-version:6.1
import PackageDescription

// libFuzzer targets for everything that reads bytes or text from outside (docs/reliability.md).
// Its own package, so the main build and `swift test` never compile it. Build (from the
// repository root, `make fuzz-build`):
//   swift build --package-path Fuzz -c debug -Xswiftc -sanitize=fuzzer,address \
//       -Xswiftc -parse-as-library -Xswiftc -enable-testing -Xcc -fsanitize=fuzzer-no-link,address
// `-enable-testing` lets the queue-message target reach the Kernel module's internal parser.
let core = Target.Dependency.product(name: "RedirectCore", package: "nfq-redirect")
let driver = Target.Dependency.target(name: "FuzzDriver")

let package = Package(
    name: "nfq-redirect-fuzz",
    dependencies: [.package(name: "nfq-redirect", path: "..")],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(name: "FuzzPacketParse", dependencies: [driver, core]),
        .executableTarget(name: "FuzzPacketRewrite", dependencies: [driver, core]),
        .executableTarget(name: "FuzzLookupCodec", dependencies: [driver, core]),
        .executableTarget(
            name: "FuzzConfiguration", dependencies: [driver, .product(name: "Daemon", package: "nfq-redirect")]),
        .executableTarget(
            name: "FuzzQueueMessages", dependencies: [driver, .product(name: "Kernel", package: "nfq-redirect")]),
    ],
    swiftLanguageModes: [.v5]
)
