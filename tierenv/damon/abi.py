"""Facts of the Linux kernel ABI that tierenv relies on, written down once.

Everything here is what the kernel defines, not a tierenv choice: the integer limits of the
sysfs files' C types (64-bit kernels), DAMON's sysfs keywords, and the kernel's own string
parsers for what is written to sysfs, ported from ``lib/kstrtox.c`` (``kstrtoull``,
``kstrtoll`` and their narrower forms, ``kstrtobool``) and ``lib/string.c``
(``sysfs_streq``). The simulator's configuration (:mod:`tierenv.damon.config`), the sysfs
backend and the fake kernel tree (:mod:`tierenv.host.fake_kernel`) import them from here.

The parsers raise :class:`KernelParseError` carrying the errno the kernel returns (``EINVAL``
for a malformed string, ``ERANGE`` for a number that does not fit), so a caller that emulates a
sysfs write can fail with exactly the kernel's error.
"""

from __future__ import annotations

import errno

# --- Integer limits (include/vdso/limits.h, 64-bit) ------------------------------------------

U8_MAX = 2**8 - 1
INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1
LLONG_MIN = -(2**63)
LLONG_MAX = 2**63 - 1
ULONG_MAX = 2**64 - 1  # unsigned long is 64 bits wide on every kernel tierenv drives
ULLONG_MAX = 2**64 - 1

GiB = 1 << 30  # the kernel counts memory in bytes; tierenv reports rates in GiB
NUMA_NO_NODE = -1

# --- DAMON (mm/damon/sysfs*.c, mm/damon/core.c) ----------------------------------------------

# Keywords the newest kernel tierenv knows accepts (older ones accept fewer, see
# tierenv.host.fake_kernel.PROFILES). Order is the kernel's enum order.
KERNEL_OPERATIONS = ("vaddr", "fvaddr", "paddr")
KERNEL_ACTIONS = (
    "willneed",
    "cold",
    "pageout",
    "hugepage",
    "nohugepage",
    "lru_prio",
    "lru_deprio",
    "migrate_hot",  # 6.11
    "migrate_cold",  # 6.11
    "stat",
)
MIGRATE_ACTIONS = ("migrate_hot", "migrate_cold")
GOAL_METRICS = (
    "user_input",
    "some_mem_psi_us",
    "node_mem_used_bp",
    "node_mem_free_bp",
    "node_memcg_used_bp",
    "node_memcg_free_bp",
    "active_mem_bp",
)
# Goal metrics measured on one node: their ``nid`` file matters.
NODE_GOAL_METRICS = (
    "node_mem_used_bp",
    "node_mem_free_bp",
    "node_memcg_used_bp",
    "node_memcg_free_bp",
)
WATERMARK_METRICS = ("none", "free_mem_rate")
CORE_FILTER_TYPES = ("addr", "target")
OPS_FILTER_TYPES = ("anon", "memcg", "young", "hugepage_size", "unmapped", "active")
KERNEL_FILTER_TYPES = CORE_FILTER_TYPES + OPS_FILTER_TYPES

MIN_NR_REGIONS = 3  # damon_set_attrs: min_nr_regions < 3 is -EINVAL
DAMOS_MAX_SCORE = 99  # the highest hotness/coldness score a region gets (damos_quota_score)


# --- lib/kstrtox.c ---------------------------------------------------------------------------


class KernelParseError(ValueError):
    """The kernel would refuse ``text``; ``errno`` is what it returns (EINVAL or ERANGE)."""

    def __init__(self, code: int, text: str, function: str) -> None:
        self.errno = code
        self.text = text
        self.function = function
        super().__init__(f"{function}({text!r}): {errno.errorcode[code]}")

    def __reduce__(self) -> tuple[object, ...]:
        return (KernelParseError, (self.errno, self.text, self.function))


_DIGITS = "0123456789abcdef"


def _fixup_radix(text: str, base: int) -> tuple[str, int]:
    """``_parse_integer_fixup_radix``: base 0 becomes 16 for ``0x`` followed by a hex digit,
    8 for any other leading ``0``, else 10; a ``0x`` prefix is skipped in base 16."""
    if base == 0:
        if text[:1] == "0":
            after = text[2:3].lower()
            base = 16 if text[1:2].lower() == "x" and after and after in _DIGITS else 8
        else:
            base = 10
    if base == 16 and text[:2].lower() == "0x":
        text = text[2:]
    return text, base


def _magnitude(text: str, base: int, limit: int | None, whole: str, function: str) -> int:
    """``_kstrtoull`` of ``text`` (``whole`` without its sign): digits in the radix, then at
    most one newline.

    As in the kernel, overflow (past ``limit``; None: no limit) is reported before a missing
    number or trailing garbage. Only ASCII digits count (Python's ``int`` would take others).
    """
    digits, base = _fixup_radix(text, base)
    valid = _DIGITS[:base]
    count = 0
    while count < len(digits) and digits[count].lower() in valid:
        count += 1
    value = int(digits[:count], base) if count else 0
    if limit is not None and value > limit:
        raise KernelParseError(errno.ERANGE, whole, function)
    if count == 0 or digits[count:] not in ("", "\n"):
        raise KernelParseError(errno.EINVAL, whole, function)
    return value


def _signed(text: str, base: int, limit: int | None, function: str) -> int:
    """``kstrtoll``'s sign rule: ``-`` then digits, or an optional ``+`` then digits."""
    if text[:1] == "-":
        return -_magnitude(text[1:], base, limit, text, function)
    return _magnitude(text.removeprefix("+"), base, limit, text, function)


def _unsigned(text: str, base: int, function: str) -> int:
    """``kstrtoull``'s sign rule: an optional ``+`` (a ``-`` is EINVAL), then digits."""
    return _magnitude(text.removeprefix("+"), base, ULLONG_MAX, text, function)


def _within(value: int, low: int, high: int, text: str, function: str) -> int:
    if not low <= value <= high:
        raise KernelParseError(errno.ERANGE, text, function)
    return value


def parse_integer(text: str, base: int = 0) -> int:
    """The grammar of ``kstrtoll`` (an optional ``+`` or ``-``, base auto-detection, one
    optional trailing newline) without its range limit: the exact value, for callers that
    check each field's range themselves. Raises EINVAL for a malformed string."""
    return _signed(text, base, None, "kstrtoll")


def kstrtoull(text: str, base: int = 0) -> int:
    """``kstrtoull``: an optional ``+`` (never ``-``), then digits in ``base`` (0: ``0x`` hex,
    leading-``0`` octal, else decimal), then at most one ``\\n``. ERANGE past ULLONG_MAX."""
    return _unsigned(text, base, "kstrtoull")


def kstrtoll(text: str, base: int = 0) -> int:
    """``kstrtoll``: as :func:`kstrtoull`, but a leading ``-`` is allowed instead of the ``+``
    (``+-1`` and ``-+1`` are EINVAL); ERANGE outside the long long range."""
    value = _signed(text, base, ULLONG_MAX, "kstrtoll")
    return _within(value, LLONG_MIN, LLONG_MAX, text, "kstrtoll")


def kstrtoul(text: str, base: int = 0) -> int:
    """``kstrtoul``: :func:`kstrtoull` (unsigned long is 64 bits wide)."""
    return _within(_unsigned(text, base, "kstrtoul"), 0, ULONG_MAX, text, "kstrtoul")


def kstrtouint(text: str, base: int = 0) -> int:
    """``kstrtouint``: :func:`kstrtoull`, then ERANGE above UINT_MAX."""
    return _within(_unsigned(text, base, "kstrtouint"), 0, UINT_MAX, text, "kstrtouint")


def kstrtou8(text: str, base: int = 0) -> int:
    """``kstrtou8``: :func:`kstrtoull`, then ERANGE above U8_MAX."""
    return _within(_unsigned(text, base, "kstrtou8"), 0, U8_MAX, text, "kstrtou8")


def kstrtoint(text: str, base: int = 0) -> int:
    """``kstrtoint``: :func:`kstrtoll`, then ERANGE outside [INT_MIN, INT_MAX]."""
    value = _signed(text, base, ULLONG_MAX, "kstrtoint")
    return _within(value, INT_MIN, INT_MAX, text, "kstrtoint")


# kstrtobool's first characters. 't'/'f' came in 2022 (before any kernel tierenv supports);
# 'e'/'d' ("enabled"/"disabled", commit ae5b3500856f) in 6.16.
_TRUE_FIRST = frozenset("yYtT1")
_FALSE_FIRST = frozenset("nNfF0")
ENABLED_DISABLED_SINCE = "6.16"


def kstrtobool(text: str, *, enabled_disabled: bool = True) -> bool:
    """``kstrtobool``: only the first character counts (``y``, ``t``, ``1`` true; ``n``,
    ``f``, ``0`` false, any case), or the first two for ``on``/``off`` (``o`` then ``n`` or
    ``f``). So ``"yellow"`` is true, ``"ofx"`` false, and ``" Y"`` (leading space) or ``"o"``
    are EINVAL. ``enabled_disabled`` adds ``e`` (true) and ``d`` (false), as kernels since
    6.16 do; pass False to emulate an older kernel."""
    first = text[:1]
    if first in _TRUE_FIRST or (enabled_disabled and first in ("e", "E")):
        return True
    if first in _FALSE_FIRST or (enabled_disabled and first in ("d", "D")):
        return False
    if first in ("o", "O") and text[1:2] in ("n", "N", "f", "F"):
        return text[1:2] in ("n", "N")
    raise KernelParseError(errno.EINVAL, text, "kstrtobool")


# --- lib/string.c ----------------------------------------------------------------------------


def sysfs_streq(written: str, keyword: str) -> bool:
    """``sysfs_streq``: equal, except that either may end in one newline the other lacks.

    Every DAMON keyword file (``operations``, ``action``, ``type``, ``state`` ...) compares
    with it, so surrounding spaces are not ignored."""
    return written in (keyword, keyword + "\n") or keyword == written + "\n"


__all__ = [
    "CORE_FILTER_TYPES",
    "DAMOS_MAX_SCORE",
    "ENABLED_DISABLED_SINCE",
    "GOAL_METRICS",
    "INT_MAX",
    "INT_MIN",
    "KERNEL_ACTIONS",
    "KERNEL_FILTER_TYPES",
    "KERNEL_OPERATIONS",
    "LLONG_MAX",
    "LLONG_MIN",
    "MIGRATE_ACTIONS",
    "MIN_NR_REGIONS",
    "NODE_GOAL_METRICS",
    "NUMA_NO_NODE",
    "OPS_FILTER_TYPES",
    "U8_MAX",
    "UINT_MAX",
    "ULLONG_MAX",
    "ULONG_MAX",
    "WATERMARK_METRICS",
    "GiB",
    "KernelParseError",
    "kstrtobool",
    "kstrtoint",
    "kstrtoll",
    "kstrtou8",
    "kstrtouint",
    "kstrtoul",
    "kstrtoull",
    "parse_integer",
    "sysfs_streq",
]
