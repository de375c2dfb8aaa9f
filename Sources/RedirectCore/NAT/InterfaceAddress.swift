/// One address configured on an interface, as rtnetlink reports it, in the kernel's order.
/// The redirect target for traffic arriving on an interface is chosen from these.
public struct InterfaceAddress: Hashable, Sendable {
    public var interfaceIndex: UInt32
    public var address: IPAddress
    public var prefixLength: UInt8
    /// IPv6 duplicate-address detection has not finished (IFA_F_TENTATIVE): not usable yet.
    public var isTentative: Bool
    /// IFA_F_SECONDARY (IPv4): not the interface's primary address.
    public var isSecondary: Bool

    public init(interfaceIndex: UInt32, address: IPAddress, prefixLength: UInt8, isTentative: Bool = false, isSecondary: Bool = false) {
        self.interfaceIndex = interfaceIndex
        self.address = address
        self.prefixLength = prefixLength
        self.isTentative = isTentative
        self.isSecondary = isSecondary
    }
}
