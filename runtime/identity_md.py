"""Text manipulation for the agent's ``IDENTITY.md`` file.

The agent reads its persona from ``<data>/workspace/IDENTITY.md``. A claim adds
a ``## Custom Instructions`` section; a later claim (after a reset) must
replace that section rather than append a second one, while keeping whatever
else the file holds (other sections may come from the image or an operator).

The section body is wrapped in HTML-comment markers carrying a random nonce.
Instructions are free text and may contain their own ``## `` headings, so
"up to the next ``## `` heading" alone would leave fragments of the old text
behind; the markers let us find the true end. Files without markers (written
by something else) fall back to the plain heading rule.

Everything here is pure string-in/string-out so it is trivially testable.
"""

from __future__ import annotations

import logging
import re
import secrets

logger = logging.getLogger(__name__)

SECTION_HEADING = "## Custom Instructions"
BASE_TITLE = "# Agent identity"

_MARK_BEGIN = "<!-- custom-instructions:begin {nonce} -->"
_MARK_END = "<!-- custom-instructions:end {nonce} -->"
_BEGIN_RE = re.compile(r"^<!-- custom-instructions:begin ([0-9a-f]+) -->$")
_NAME_RE = re.compile(r"^Name: .*$")


def _is_section_heading(line: str) -> bool:
    return line.rstrip() == SECTION_HEADING


def _is_level2_heading(line: str) -> bool:
    return line.startswith("## ")


def base_identity(agent_name: str) -> str:
    """Header written when the file does not exist yet."""
    return f"{BASE_TITLE}\n\nName: {_one_line(agent_name)}\n"


def _one_line(text: str) -> str:
    # A newline in the name would let it inject headings into the file.
    return " ".join(text.split())


def _section_end(lines: list[str], heading_index: int) -> int:
    """Index one past the last line of the section starting at ``heading_index``."""
    start = heading_index + 1
    # Skip blank lines between the heading and a possible begin marker.
    probe = start
    while probe < len(lines) and not lines[probe].strip():
        probe += 1
    if probe < len(lines):
        match = _BEGIN_RE.match(lines[probe].rstrip())
        if match:
            end_marker = _MARK_END.format(nonce=match.group(1))
            for index in range(probe + 1, len(lines)):
                if lines[index].rstrip() == end_marker:
                    return index + 1
            # Begin marker without its end: the file was edited by hand; fall
            # back to the heading rule rather than swallowing the whole file.
            logger.warning("IDENTITY.md custom section has no end marker; using heading rule")
    for index in range(start, len(lines)):
        if _is_level2_heading(lines[index]):
            return index
    return len(lines)


def _strip_sections(text: str) -> tuple[list[str], int | None]:
    """Remove every custom-instructions section.

    Returns the remaining lines (with line endings) and the line index where
    the first removed section started, so a replacement lands in the same place.
    """
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    first_at: int | None = None
    index = 0
    while index < len(lines):
        if _is_section_heading(lines[index]):
            if first_at is None:
                first_at = len(kept)
            index = _section_end(lines, index)
            continue
        kept.append(lines[index])
        index += 1
    return kept, first_at


def has_custom_section(text: str) -> bool:
    return any(_is_section_heading(line) for line in text.splitlines())


def render_section(instructions: str) -> str:
    nonce = secrets.token_hex(8)
    body = instructions if instructions.endswith("\n") or not instructions else instructions + "\n"
    return (
        f"{SECTION_HEADING}\n\n"
        f"{_MARK_BEGIN.format(nonce=nonce)}\n"
        f"{body}"
        f"{_MARK_END.format(nonce=nonce)}\n"
    )


def _join(before: list[str], section: str, after: list[str]) -> str:
    head = "".join(before).rstrip("\n")
    tail = "".join(after).lstrip("\n")
    parts = [part for part in (head, section.rstrip("\n"), tail.rstrip("\n")) if part]
    return "\n\n".join(parts) + "\n"


def set_agent_name(text: str, agent_name: str) -> str:
    """Update the ``Name:`` line in the preamble (before the first ``## ``),
    if there is one. Files without such a line are left alone; the name is
    also stored in the binding, so nothing is lost."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if _is_level2_heading(line):
            break
        if _NAME_RE.match(line.rstrip("\r\n")):
            ending = line[len(line.rstrip("\r\n")) :] or "\n"
            lines[index] = f"Name: {_one_line(agent_name)}{ending}"
            break
    return "".join(lines)


def apply_instructions(existing: str | None, agent_name: str, instructions: str) -> str:
    """Return the new file content for a claim."""
    text = base_identity(agent_name) if existing is None else set_agent_name(existing, agent_name)
    kept, first_at = _strip_sections(text)
    section = render_section(instructions)
    if first_at is None:
        return _join(kept, section, [])
    return _join(kept[:first_at], section, kept[first_at:])


def remove_instructions(existing: str) -> str | None:
    """Return the file content with the custom section removed, or ``None``
    when nothing but the base header we generate would remain (the whole
    file belonged to the claim, so a factory reset deletes it)."""
    kept, _ = _strip_sections(existing)
    remaining = "".join(kept).strip("\n")
    lines = [line for line in remaining.splitlines() if line.strip()]
    if not lines or (
        len(lines) == 2 and lines[0].rstrip() == BASE_TITLE and _NAME_RE.match(lines[1])
    ):
        return None
    return remaining + "\n"
