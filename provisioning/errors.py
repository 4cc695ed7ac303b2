"""Errors of provisioning.

ConfigError (shared.errors)
└── ProvisioningError   a bad inventory or fleet file, or an inconsistent fleet (names the file and the spot)
"""

from __future__ import annotations

from shared.errors import ConfigError


class ProvisioningError(ConfigError):
    """An inventory or fleet file cannot be turned into node configs."""
