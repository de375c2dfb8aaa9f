import FuzzDriver
import RedirectCore

/// The lookup protocol codec, both ends: any line either parses or gets a `LookupRequestError`
/// (whose text must be a printable one-line reason); a parsed request printed and parsed again
/// is the same request; an answer line parses at most into an answer that prints back the same.
@_cdecl("FuzzLookupCodec_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzLookupCodec)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzLookupCodec(_ input: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = input else { return 0 }
    let line = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let request = try LookupRequest(parsing: line)
        guard let printed = withoutNewline(request.line) else { preconditionFailure("request line without newline") }
        let again = try LookupRequest(parsing: printed)
        precondition(again == request, "request does not survive print and parse: \(printed)")
    } catch {
        let reason = error.description
        precondition(!reason.contains("\n") && reason.utf8.count < 256, "unsafe error text")
    }
    if let answer = LookupAnswer(parsing: line) {
        guard let printed = withoutNewline(answer.line) else { preconditionFailure("answer line without newline") }
        precondition(LookupAnswer(parsing: printed) == answer, "answer does not survive print and parse: \(printed)")
    }
    return 0
}

/// The line without its final "\n", cut by bytes: as Characters, "\r\n" is one grapheme, so
/// `String.dropLast()` would take a "\r" that belongs to the line with it (the first finding).
func withoutNewline(_ line: String) -> Substring? {
    guard line.utf8.last == UInt8(ascii: "\n") else { return nil }
    return Substring(line.utf8.dropLast())
}
