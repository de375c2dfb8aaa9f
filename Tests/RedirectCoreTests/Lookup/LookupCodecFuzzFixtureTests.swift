import RedirectCore
import XCTest

/// Inputs the lookup-codec fuzzer (Fuzz/Sources/FuzzLookupCodec) stopped on, kept as fixtures.
final class LookupCodecFuzzFixtureTests: XCTestCase {
    /// fuzz-artifacts/FuzzLookupCodec/crash-1fb8f9d5: a BADREQUEST answer whose reason holds
    /// invalid UTF-8 and ends in "\r". The codec keeps the reason byte for byte (replacement
    /// characters and the "\r" included) and prints it back unchanged; the finding was the
    /// harness's own Character-wise newline strip, which took the "\r" with the "\n".
    func testBadRequestAnswerWithInvalidUTF8AndCarriageReturnRoundTrips() throws {
        let bytes = Array("ERR BADREQUEST b".utf8) + Array(repeating: 0xEB, count: 77) + Array("ad VERSION\r".utf8)
        let line = String(decoding: bytes, as: UTF8.self)
        let answer = try XCTUnwrap(LookupAnswer(parsing: line))
        guard case .badRequest(let reason) = answer else { return XCTFail("parsed as \(answer)") }
        XCTAssertTrue(reason.utf8.elementsEqual(line.utf8.dropFirst("ERR BADREQUEST ".utf8.count)))
        XCTAssertTrue(answer.line.utf8.elementsEqual(line.utf8 + [UInt8(ascii: "\n")]))
        XCTAssertEqual(LookupAnswer(parsing: Substring(answer.line.utf8.dropLast())), answer)
    }
}
