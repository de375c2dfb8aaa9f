import RedirectCore

/// Where the daemon learns the host's interface addresses (the redirect targets of
/// `--redirect`): rtnetlink (`RtnetlinkAddressSource`) or, in tests, `InMemoryAddressSource`.
public protocol InterfaceAddressSource: AnyObject {
    /// Every IPv4 address, then every IPv6 address, each family in the kernel's order (per
    /// interface, primary first).
    func addresses() throws(KernelError) -> [InterfaceAddress]

    /// Starts watching for address changes. Subscribes before it reads anything, so no change
    /// between the first snapshot and the next is missed.
    func makeMonitor() throws(KernelError) -> any InterfaceAddressMonitor
}

/// A subscription to address changes.
public protocol InterfaceAddressMonitor: AnyObject {
    /// The first call returns the current addresses at once; each later call blocks until
    /// addresses change and returns a fresh full snapshot. Nil once `stop()` was called.
    func nextSnapshot() throws(KernelError) -> [InterfaceAddress]?

    /// Ends the monitor; a blocked `nextSnapshot` returns nil. Safe from any thread.
    func stop()
}

extension InterfaceAddressMonitor {
    /// Calls `onChange` with the current addresses and then after every change, until `stop()`.
    public func run(onChange: ([InterfaceAddress]) -> Void) throws(KernelError) {
        while let snapshot = try nextSnapshot() { onChange(snapshot) }
    }
}
