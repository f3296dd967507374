"""The controller interface, defined in the library's contracts
(``tierenv.contracts.controller``, which the daemon and host backend drive) and re-exported
here for the controllers and oracles that implement it."""

from tierenv.contracts.controller import (
    ControlContext,
    Controller,
    ControllerError,
    HostNeeds,
    require_node_count,
)

__all__ = ["ControlContext", "Controller", "ControllerError", "HostNeeds", "require_node_count"]
