"""Property tests of WASI 0.2's host functions, through the fuzz target's call decoder
(``fuzz/wasip2_calls.py``): any calls, with any arguments of their WIT types, over a served
component's state. Each call returns a value of its WIT type or an error result, or traps on
purpose; no handle resolves to a closed resource; a closed instance leaves no task, no fd and
nothing for the garbage collector to close. ``one_input`` asserts all of that.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fuzz import wasip2_calls

_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _names() -> list[str]:
    return [call.name for call in wasip2_calls.host().calls]


@_SETTINGS
@given(st.data())
def test_any_calls_with_any_arguments_keep_the_host_consistent(data: st.DataObject) -> None:
    call = st.tuples(st.sampled_from(_names()), st.binary(max_size=48))
    made = data.draw(st.lists(call, min_size=1, max_size=wasip2_calls.MAX_CALLS))
    for outcome in wasip2_calls.one_input(wasip2_calls.encode(made, wasip2_calls.host().calls)):
        event(outcome)


@_SETTINGS
@given(st.data())
def test_every_function_reached_with_any_arguments_on_a_resource_of_its_own(data: st.DataObject) -> None:
    table = wasip2_calls.host().calls
    call = data.draw(st.sampled_from(table))
    preamble = wasip2_calls.preamble(call)
    outcomes = wasip2_calls.one_input(wasip2_calls.encode([*preamble, (call.name, data.draw(st.binary()))], table))
    assert len(outcomes) == len(preamble) + 1, f"{call.name} was not reached: {outcomes}"
    event(f"{call.name}: {outcomes[-1]}")
