/// Starts libFuzzer from an executable target's entry point.
///
/// Why: SwiftPM links every ELF executable with `--defsym main=<Module>_main` (so executables can
/// be imported by tests), which replaces libFuzzer's own `main`; built with `-parse-as-library`
/// the module has no `<Module>_main` and the link fails. Each fuzz target therefore defines
/// `<Module>_main` and hands its test function (also exported as `LLVMFuzzerTestOneInput`, which
/// libFuzzer's archive references) to libFuzzer's documented `LLVMFuzzerRunDriver`, which
/// parses the usual libFuzzer flags.
public typealias FuzzTest = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ test: FuzzTest
) -> Int32

public enum FuzzDriver {
    public static func run(
        _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, _ test: FuzzTest
    ) -> Int32 {
        var count = argc
        var arguments = argv
        return LLVMFuzzerRunDriver(&count, &arguments, test)
    }
}
