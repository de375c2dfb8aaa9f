import Daemon
import Foundation
import XCTest

/// One version: the constant, the newest CHANGELOG.md heading, the build-info metric.
final class DaemonVersionTests: XCTestCase {
    func testTheChangelogsNewestHeadingNamesTheVersion() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../CHANGELOG.md")
        let text = try String(contentsOf: url, encoding: .utf8)
        let heading = text.split(separator: "\n").first { $0.hasPrefix("## ") }
        XCTAssertTrue(heading?.hasPrefix("## [\(DaemonVersion.current)]") == true, "newest heading: \(heading ?? "none")")
    }

    func testTheVersionIsSemantic() {
        let parts = DaemonVersion.current.split(separator: ".")
        XCTAssertEqual(parts.count, 3)
        XCTAssertTrue(parts.allSatisfy { Int($0) != nil })
    }
}
