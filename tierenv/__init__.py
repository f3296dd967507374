"""tierenv: learning weighted memory interleaving across DDR and CXL."""

__version__ = "0.1.0"


def _register() -> None:
    try:
        from tierenv.envs.registration import register_envs
    except ImportError:  # pragma: no cover - gymnasium is a dependency
        return
    register_envs()


_register()
