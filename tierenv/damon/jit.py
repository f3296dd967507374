"""numba's ``njit`` where numba is installed; otherwise the kernels run as plain Python."""

from __future__ import annotations

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; this keeps imports working

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        if args and callable(args[0]):
            return args[0]
        return lambda function: function


__all__ = ["njit"]
