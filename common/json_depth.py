"""How deeply a JSON text nests, measured with C-speed byte operations before any parser sees it.

msgspec's decoders recurse once per level of nesting, and an untyped decode (or
a typed one skipping an unknown field) of a few thousand levels raises
RecursionError, which is not a decode error. So every frame from the network
is measured first, without parsing it:

1. drop escaped backslashes and escaped quotes, so every `"` left opens or
   closes a string (as a JSON parser reads it, up to its first syntax error);
2. keep only brackets and quotes, `{}` mapped to `[]`, and cut out what lies
   between quotes: brackets inside strings do not nest;
3. the depth is the highest count of open brackets at any point. A run of
   more than `limit` `[` is too deep at once; else remove every innermost `[]`
   pair (one level everywhere) while that shrinks the text a lot, and add up
   the run lengths of what is left.

For valid JSON this is its exact depth; for malformed JSON it bounds what a
parser reaches before it gives up (brackets that never open count for nothing).
"""

from __future__ import annotations

import itertools
import operator
import re

_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_RUNS = re.compile(rb"\[+|\]+")
_SHORT = 2048  # below this many bytes, counting every bracket is the cheapest first test


def too_deep(text: bytes, limit: int) -> bool:
    """True when `text` nests more than `limit` levels deep (or could, if it is malformed)."""
    if len(text) < _SHORT and text.count(b"[") + text.count(b"{") <= limit:
        return False
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    left = text.translate(_TO_SQUARE, _NOT_STRUCTURE)
    if left.count(b"[") <= limit:
        return False  # the common case: too few brackets to nest that deep at all
    if b'"' in left:
        # Two quotes in a row hold no bracket between them (an empty string, or the
        # gap between two strings): dropping them changes nothing and is cheap.
        left = left.replace(b'""', b"")
        if b'"' in left:
            left = b"".join(left.split(b'"')[::2])
    if b"[" * (limit + 1) in left:
        return True
    levels = 0
    while left and levels < limit:
        # Each round takes one level off every innermost pair; once pairs are sparse,
        # summing the runs costs less than more rounds over the whole text.
        if left.count(b"[]") * 16 < len(left):
            break
        left = left.replace(b"[]", b"")
        levels += 1
    return levels + _max_open(left) > limit


def _max_open(brackets: bytes) -> int:
    """The highest count of unclosed `[` at any point of a text of `[` and `]` only."""
    if not brackets:
        return 0
    lengths = list(map(len, _RUNS.findall(brackets)))
    if brackets[0] == ord("]"):
        lengths.insert(0, 0)  # runs alternate from an opening one
    lengths[1::2] = map(operator.neg, lengths[1::2])
    return max(0, max(itertools.accumulate(lengths)))
