/// The one place the version is written. `nfq-redirectd --version`, `nfq-redirect --version`,
/// the lookup protocol's `VERSION` and the `nfqr_build_info` metric read it; the newest
/// heading of CHANGELOG.md must name it (DaemonVersionTests).
public enum DaemonVersion {
    public static let current = "0.1.0"
}
