import Daemon
import FuzzDriver

/// The configuration file parser: any text either applies to a configuration or is refused
/// with a `ConfigurationError`, never a crash or a hang.
@_cdecl("FuzzConfiguration_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzConfiguration)
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzConfiguration(_ input: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = input else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var configuration = DaemonConfiguration()
    do {
        try ConfigurationFile.apply(text, path: "fuzz.toml", to: &configuration)
    } catch {
        precondition(!"\(error)".isEmpty, "a refusal without a reason")
    }
    return 0
}
