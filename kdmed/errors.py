"""The exceptions kdmed raises on purpose.

Every error a user can cause (a bad parameter, an unreadable file, a missing weight file) is one of these,
raised at the boundary where the bad value enters, with a message that names the value, what is allowed
and how to fix it. Anything else escaping kdmed is a bug.
"""


class KdmedError(Exception):
    """Base class: catch this to handle every expected failure in one place (the app, the CLI)."""


class ConfigError(KdmedError):
    """params.yaml (or a -S override) holds an unknown key, a wrong type or an impossible value."""


class StudyReadError(KdmedError):
    """A study or image could not be read: corrupt, truncated, unsupported, too large or inconsistent."""


class UnsupportedStudyError(StudyReadError):
    """The file is valid but kdmed cannot use it (a missing decoder, a mosaic, a wrong dimensionality)."""


class WeightsNotFoundError(KdmedError):
    """Pretrained teacher weights are not on this machine and cannot be downloaded."""


class CheckpointError(KdmedError):
    """A model checkpoint is missing, corrupt, or was written by an incompatible kdmed."""


class InputSizeError(ConfigError, ValueError):
    """Images of a size the model cannot take (RD4AD's decoder needs sides that are multiples of its
    alignment); a ValueError too, for callers that catch that."""


class TrainingDivergedError(KdmedError, FloatingPointError):
    """The training loss became NaN or infinite: the learning rate is too high for this setup."""


class DatasetError(KdmedError):
    """A dataset folder does not have the layout its adapter expects, or a split would be empty."""
