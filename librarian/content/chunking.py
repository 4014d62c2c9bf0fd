"""Structure-aware chunks of a Markdown document.

Blocks are paragraphs, list runs and fenced code (never split inside a fence); a chunk gathers
whole blocks up to a target size in words, starts afresh at each heading, and carries its heading
path. Consecutive chunks of one section overlap by a few words so a sentence cut at a boundary is
still found whole in one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TARGET_WORDS = 180
OVERLAP_WORDS = 30
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    heading_path: tuple[str, ...]


def split_blocks(markdown: str) -> list[tuple[str, tuple[str, ...]]]:
    """(block text, heading path) pairs in document order."""
    blocks: list[tuple[str, tuple[str, ...]]] = []
    path: list[tuple[int, str]] = []
    current: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(current).strip()
        if text:
            blocks.append((text, tuple(h for _, h in path)))
        current.clear()

    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            current.append(line)
            if not in_fence:
                flush()
            continue
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            path[:] = [(lvl, h) for lvl, h in path if lvl < level] + [(level, heading.group(2))]
            continue
        if not in_fence and not line.strip():
            flush()
            continue
        current.append(line)
    flush()
    return blocks


def chunk_markdown(markdown: str, target_words: int = TARGET_WORDS,
                   overlap_words: int = OVERLAP_WORDS) -> list[Chunk]:
    chunks: list[Chunk] = []
    buf: list[str] = []
    buf_words = 0
    buf_path: tuple[str, ...] = ()

    def emit() -> None:
        nonlocal buf, buf_words
        if buf:
            chunks.append(Chunk(len(chunks), "\n\n".join(buf), buf_path))
        buf, buf_words = [], 0

    for text, path in split_blocks(markdown):
        words = len(text.split())
        if path != buf_path:
            emit()
            buf_path = path
        elif buf and buf_words + words > target_words:
            tail = " ".join(buf[-1].split()[-overlap_words:]) if overlap_words else ""
            emit()
            if tail:
                buf, buf_words = [tail], len(tail.split())
        if words > target_words * 2 and not text.lstrip().startswith(("```", "~~~")):
            # One huge paragraph: cut it by words so no chunk blows the model's token window.
            emit()
            tokens = text.split()
            step = target_words - overlap_words
            for start in range(0, len(tokens), step):
                buf, buf_words = [" ".join(tokens[start:start + target_words])], target_words
                emit()
            continue
        buf.append(text)
        buf_words += words
    emit()
    return chunks
