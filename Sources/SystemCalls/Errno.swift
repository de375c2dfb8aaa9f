import Glibc

/// A typed errno value, in the manner of swift-system's `Errno`.
public struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: CInt

    public init(rawValue: CInt) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(rawValue: errno) }

    public static let wouldBlock = Errno(rawValue: EAGAIN)
    public static let noBufferSpace = Errno(rawValue: ENOBUFS)
    public static let notPermitted = Errno(rawValue: EPERM)
    public static let noSuchFile = Errno(rawValue: ENOENT)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let processDescriptorLimit = Errno(rawValue: EMFILE)
    public static let systemDescriptorLimit = Errno(rawValue: ENFILE)
    public static let connectionReset = Errno(rawValue: ECONNRESET)
    public static let brokenPipe = Errno(rawValue: EPIPE)

    /// `ENOBUFS (No buffer space available)`.
    public var description: String {
        "\(Self.symbol(rawValue) ?? "errno \(rawValue)") (\(String(cString: strerror(rawValue))))"
    }

    private static func symbol(_ code: CInt) -> String? {
        switch code {
        case EPERM: "EPERM"
        case EMFILE: "EMFILE"
        case ENFILE: "ENFILE"
        case ENOENT: "ENOENT"
        case EINTR: "EINTR"
        case EBADF: "EBADF"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EBUSY: "EBUSY"
        case EINVAL: "EINVAL"
        case ENODEV: "ENODEV"
        case EMSGSIZE: "EMSGSIZE"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case ENOBUFS: "ENOBUFS"
        case EPROTONOSUPPORT: "EPROTONOSUPPORT"
        case EAFNOSUPPORT: "EAFNOSUPPORT"
        case ECONNRESET: "ECONNRESET"
        case EPIPE: "EPIPE"
        default: nil
        }
    }
}
