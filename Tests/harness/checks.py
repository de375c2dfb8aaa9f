"""What a test asserts with: a failure carries the expected and the observed value."""


class TestFailure(Exception):
    pass


def expect(condition, expected, got):
    if not condition:
        raise TestFailure(f"expected: {expected}\n     got: {got}")


def expect_equal(what, expected, got):
    expect(expected == got, f"{what} = {expected!r}", repr(got))


def parse_json_answer(output, what, failure=TestFailure):
    """The JSON object a helper program printed; `failure` if it printed none or an error."""
    import json
    try:
        answer = json.loads(output)
    except ValueError:
        raise failure(f"{what} printed no JSON: {output[-300:]!r}") from None
    if "error" in answer:
        raise failure(f"{what} failed: {answer['error']}")
    return answer
