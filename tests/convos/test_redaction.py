"""What the redactor masks (speed is measured by `make bench`, never asserted here)."""
import pytest

from convos.redaction import redact

KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIO\n-----END EC PRIVATE KEY-----"


@pytest.mark.parametrize("text,expected", [
    (f"a {KEY} b", "a [redacted] b"),
    (f"a {KEY} b {KEY} c", "a [redacted] b [redacted] c"),
    ("x -----BEGIN PRIVATE KEY----- y -----BEGIN PRIVATE KEY----- z -----END PRIVATE KEY----- w", "x [redacted] w"),
    ("cut short: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk", "cut short: [redacted]"),
    ("-----END PRIVATE KEY----- alone", "-----END PRIVATE KEY----- alone"),
    ("Authorization: Bearer abcdefgh12345", "Authorization: Bearer [redacted]"),
    ("BEARER ABCDEFGH12345", "BEARER [redacted]"),
    ("bearer tokens are short", "bearer tokens are short"),
    ("key sk-or-v1-0123456789abcdef", "key [redacted]"),
    ("ghp_0123456789abcdef", "[redacted]"),
    ("0x" + "ab" * 32, "[redacted]"),
])
def test_it_masks_secret_shapes_and_nothing_else(text, expected):
    assert redact(text) == expected
