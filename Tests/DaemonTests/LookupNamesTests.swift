import Daemon
import XCTest

/// `[lookup]` names users and groups of the host: one it lacks is a configuration error (exit
/// status 2 from `--check-config` and the daemon), with the field and a way out in the message.
final class LookupNamesTests: XCTestCase {
    private func configuration(group: String? = nil, users: [String] = [], groups: [String] = []) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        configuration.lookup.socketGroup = group
        configuration.lookup.allowUsers = users
        configuration.lookup.allowGroups = groups
        return configuration
    }

    func testNamesTheHostHasPass() {
        XCTAssertNoThrow(try configuration().checkLookupNames(source: "test.toml"))
        XCTAssertNoThrow(try configuration(group: "root", users: ["root"], groups: ["0"]).checkLookupNames(source: "test.toml"))
        XCTAssertNoThrow(try configuration(group: "4242").checkLookupNames(source: "test.toml"))  // a number needs no entry
    }

    func testAMissingSocketGroupIsAConfigurationError() {
        XCTAssertThrowsError(try configuration(group: "nfqr-no-such-group").checkLookupNames(source: "test.toml")) { error in
            guard let error = error as? ConfigurationError else { return XCTFail("not a ConfigurationError: \(error)") }
            XCTAssertEqual(error.location, "test.toml")
            XCTAssertEqual(error.field, "lookup.group")
            XCTAssertTrue(error.problem.hasPrefix("no group named 'nfqr-no-such-group' on this host"), error.problem)
            XCTAssertTrue(error.problem.contains("groupadd --system nfqr-no-such-group"), error.problem)
        }
    }

    func testMissingAllowedUsersAndGroupsNameTheirField() {
        XCTAssertThrowsError(try configuration(users: ["nfqr-no-such-user"]).checkLookupNames(source: "x")) { error in
            XCTAssertEqual((error as? ConfigurationError)?.field, "lookup.allow_users")
        }
        XCTAssertThrowsError(try configuration(groups: ["nfqr-no-such-group"]).checkLookupNames(source: "x")) { error in
            XCTAssertEqual((error as? ConfigurationError)?.field, "lookup.allow_groups")
        }
    }
}
