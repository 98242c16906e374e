"""The shared retry policy: Retry-After, jittered back-off, what is permanent, and the retry loop."""
from __future__ import annotations

import email.utils
import time

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from services_app import retry

URL = "https://api.example.test/v1/things"


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize("value, seconds", [("3", 3.0), (" 120 ", 120.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0)])
def test_it_retry_after_in_seconds(value, seconds):
    assert retry.retry_after_s(value) == seconds


def test_it_retry_after_as_an_http_date():
    assert retry.retry_after_s(http_date(30)) == pytest.approx(30, abs=2)
    assert retry.retry_after_s(http_date(-30)) == 0.0  # already past: no wait


@pytest.mark.parametrize("value", [None, "", "soon", "inf", "nan"])
def test_it_an_absent_or_unreadable_retry_after_is_none(value):
    assert retry.retry_after_s(value) is None


def test_it_retry_after_is_capped_when_asked():
    assert retry.retry_after_s("900", max_s=300) == 300
    assert retry.retry_after_s(http_date(900), max_s=300) == 300
    assert retry.retry_after_s("7", max_s=300) == 7


@pytest.mark.parametrize("attempt, low, high", [(0, 0.25, 0.5), (1, 0.5, 1.0), (2, 1.0, 2.0), (20, 15.0, 30.0)])
def test_it_backoff_stays_between_half_and_all_of_its_capped_ceiling(attempt, low, high):
    assert retry.backoff_s(attempt, jitter=lambda: 0.0) == low
    assert retry.backoff_s(attempt, jitter=lambda: 0.999999) == pytest.approx(high)
    assert all(low <= retry.backoff_s(attempt) <= high for _ in range(200))  # the real jitter too


def test_it_backoff_grows_and_jitter_varies_it():
    assert retry.backoff_s(0, jitter=lambda: 0.5) == 0.375
    assert retry.backoff_s(1, jitter=lambda: 0.5) == 0.75
    assert len({retry.backoff_s(3) for _ in range(50)}) > 1


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_it_retryable_statuses(status):
    assert retry.is_retryable_status(status) and not retry.is_permanent_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_it_other_client_errors_are_permanent(status):
    assert retry.is_permanent_status(status) and not retry.is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 204, 302])
def test_it_a_non_error_status_is_neither(status):
    assert not retry.is_permanent_status(status) and not retry.is_retryable_status(status)


def refused() -> requests.ConnectionError:
    return requests.ConnectionError(MaxRetryError(None, URL, NewConnectionError(None, "refused")))


@pytest.mark.parametrize("exc", [requests.ConnectTimeout(), requests.ReadTimeout(), requests.ConnectionError(), refused(),
                                 requests.exceptions.ChunkedEncodingError()])
def test_it_connection_errors_and_timeouts_are_retryable(exc):
    assert retry.is_retryable_error(exc)


@pytest.mark.parametrize("exc", [requests.exceptions.InvalidURL(), requests.TooManyRedirects(), ValueError()])
def test_it_other_errors_are_not(exc):
    assert not retry.is_retryable_error(exc)


def test_it_only_a_request_that_never_left_counts_as_never_sent():
    assert retry.never_sent(requests.ConnectTimeout()) and retry.never_sent(refused())
    assert not retry.never_sent(requests.ReadTimeout()) and not retry.never_sent(requests.ConnectionError("reset by peer"))


class Attempts:
    """Fails with the given exceptions in turn, then answers "done"."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def test_it_retries_with_backoff_or_the_given_delay_until_it_succeeds(clock):
    attempt = Attempts(retry.TryAgain("HTTP 503"), retry.TryAgain("HTTP 429", delay=7.0))
    assert retry.call_with_retries(attempt, retries=2, what="Example", sleep=clock.sleep, jitter=lambda: 0.5) == "done"
    assert attempt.calls == 3 and clock.sleeps == [0.375, 7.0]


def test_it_gives_up_after_the_retries_with_the_last_failure(clock):
    error = ValueError("the caller's own error")
    attempt = Attempts(*(retry.TryAgain(f"HTTP 50{n}", error=error) for n in range(3)))
    with pytest.raises(retry.RetriesExhausted) as gave_up:
        retry.call_with_retries(attempt, retries=2, what="Example", sleep=clock.sleep)
    assert gave_up.value.attempts == 3 and gave_up.value.last.reason == "HTTP 502" and gave_up.value.last.error is error
    assert attempt.calls == 3 and len(clock.sleeps) == 2


def test_it_any_other_exception_is_final(clock):
    attempt = Attempts(LookupError("permanent"))
    with pytest.raises(LookupError):
        retry.call_with_retries(attempt, retries=5, what="Example", sleep=clock.sleep)
    assert attempt.calls == 1 and clock.sleeps == []


def test_it_no_retries_means_one_attempt(clock):
    with pytest.raises(retry.RetriesExhausted) as gave_up:
        retry.call_with_retries(Attempts(retry.TryAgain("timed out")), retries=0, what="Example", sleep=clock.sleep)
    assert gave_up.value.attempts == 1 and clock.sleeps == []
