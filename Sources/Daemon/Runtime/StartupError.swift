/// Why the daemon could not start, worded as the one line it prints before exiting.
public struct StartupError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}
