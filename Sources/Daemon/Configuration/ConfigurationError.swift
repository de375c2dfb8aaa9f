/// A configuration problem, worded for the one error line the daemon prints before exiting.
public struct ConfigurationError: Error, Equatable, CustomStringConvertible {
    /// `file:line` when the problem is in the config file, or the flag's name.
    public var location: String
    /// The field, e.g. `queue.count` or `redirect[2].ports`.
    public var field: String
    public var problem: String

    public init(location: String, field: String, problem: String) {
        self.location = location
        self.field = field
        self.problem = problem
    }

    public var description: String {
        field.isEmpty ? "\(location): \(problem)" : "\(location): \(field): \(problem)"
    }
}
