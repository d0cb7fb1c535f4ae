# Schemathesis hooks for scripts/check-api: keep generated cases answerable within a bounded run.
# A GET with wait=true is a watch held up to five minutes by design; the fuzzer would only time out on it.
import schemathesis

# Go's strconv.ParseBool words for true: these are the values that turn a GET into a long-poll.
GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}


@schemathesis.hook
def map_case(context, case):
    # Only the watch is dropped: every other parameter combination, and wait=true on writes (error 209), stays.
    if case.method.upper() == "GET" and isinstance(case.query, dict) and str(case.query.get("wait")) in GO_TRUE:
        case.query = {name: value for name, value in case.query.items() if name != "wait"}
    return case
