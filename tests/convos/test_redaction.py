"""What the redactor masks (speed is measured by `make bench`, never asserted here)."""
import pytest

from convos.redaction import redact



def pem(marker: str, kind: str = "") -> str:
    """A PEM marker line; the tests' "keys" are markers around placeholder text, never key material."""
    return f"-----{marker} {kind + ' ' if kind else ''}PRIVATE KEY-----"


KEY = f"{pem('BEGIN', 'EC')}\nplaceholder-body\n{pem('END', 'EC')}"


@pytest.mark.parametrize("text,expected", [
    (f"a {KEY} b", "a [redacted] b"),
    (f"a {KEY} b {KEY} c", "a [redacted] b [redacted] c"),
    (f"x {pem('BEGIN')} y {pem('BEGIN')} z {pem('END')} w", "x [redacted] w"),
    (f"cut short: {pem('BEGIN', 'OPENSSH')}\nplaceholder-body", "cut short: [redacted]"),
    (f"{pem('END')} alone", f"{pem('END')} alone"),
    ("Authorization: Bearer abcdefgh12345", "Authorization: Bearer [redacted]"),
    ("BEARER ABCDEFGH12345", "BEARER [redacted]"),
    ("bearer tokens are short", "bearer tokens are short"),
    ("key sk-or-v1-0123456789abcdef", "key [redacted]"),
    ("ghp_0123456789abcdef", "[redacted]"),
    ("0x" + "ab" * 32, "[redacted]"),
])
def test_it_masks_secret_shapes_and_nothing_else(text, expected):
    assert redact(text) == expected
