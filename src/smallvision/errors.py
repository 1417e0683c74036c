"""Errors a user can fix. Entry scripts print their message without a traceback."""


class SmallvisionError(Exception):
    """Base class: a foreseeable mistake (bad input, bad config, missing file) with a message that says the fix."""


class ConfigError(SmallvisionError):
    """A configuration value is invalid. The message names the key, the value and what is allowed."""


class DataError(SmallvisionError):
    """Input data (download, archive, image tree, manifest) is missing or unusable."""


class DivergedError(SmallvisionError):
    """Training produced a loss that is NaN or infinite; the run stops with nothing that looks finished."""


class WeightsUnavailableError(SmallvisionError):
    """Pretrained weights cannot be found offline. The message names the missing file and how to supply it."""
