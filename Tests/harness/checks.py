"""What a test asserts with: a failure carries the expected and the observed value."""


class TestFailure(Exception):
    pass


def expect(condition, expected, got):
    if not condition:
        raise TestFailure(f"expected: {expected}\n     got: {got}")


def expect_equal(what, expected, got):
    expect(expected == got, f"{what} = {expected!r}", repr(got))
