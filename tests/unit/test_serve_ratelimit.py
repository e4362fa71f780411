import pytest

from gpuhive.serve.gateway.ratelimit import KeyLimits, RateState, admit, charge_tokens


def test_no_limits_always_admits() -> None:
    d = admit(RateState(), KeyLimits(), 0.0)
    assert d.allowed and d.state == RateState()


def test_requests_per_minute_bucket_and_retry_after() -> None:
    lim = KeyLimits(rpm=3)
    st = RateState()
    for t in (0.0, 0.1, 0.2):
        d = admit(st, lim, t)
        assert d.allowed
        st = d.state
    d = admit(st, lim, 0.3)
    assert not d.allowed and d.limit == "rpm"
    # 3/min refills one every 20 s; 0.3 s in, 0.1 of one has come back
    assert d.retry_after_s == pytest.approx(20.0 - 0.3 * 3 / 60 * 20, rel=1e-6)
    assert admit(d.state, lim, 0.3 + d.retry_after_s).allowed


def test_the_bucket_never_holds_more_than_its_capacity() -> None:
    lim = KeyLimits(rpm=2)
    st = admit(RateState(), lim, 0.0).state
    st = admit(st, lim, 1e6).state  # a long idle time refills to 2, not more
    st = admit(st, lim, 1e6).state
    assert not admit(st, lim, 1e6).allowed


def test_tokens_per_day_admits_while_positive_and_charges_after() -> None:
    lim = KeyLimits(tokens_per_day=1000)
    st = admit(RateState(), lim, 0.0).state
    st = charge_tokens(st, lim, 1500, 0.0)  # one big answer overdraws the bucket
    d = admit(st, lim, 1.0)
    assert not d.allowed and d.limit == "tokens_per_day"
    # 501 tokens of debt at 1000/86400 per s
    assert d.retry_after_s == pytest.approx((1 - (-500 + 1000 / 86400)) / (1000 / 86400))
    assert admit(st, lim, 86400 * 0.6).allowed


def test_refused_requests_do_not_cost_a_request() -> None:
    lim = KeyLimits(rpm=1, tokens_per_day=10)
    st = charge_tokens(admit(RateState(), lim, 0.0).state, lim, 50, 0.0)
    d = admit(st, lim, 61.0)
    assert not d.allowed and d.limit == "tokens_per_day"
    assert d.state.requests is not None and d.state.requests.level == pytest.approx(0.0)
