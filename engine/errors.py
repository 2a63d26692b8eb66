"""The one exception family: every message names what is wrong and where."""


class NudgeError(Exception):
    """Base of every error nudge raises on purpose."""


class SourceError(NudgeError):
    """A whole input cannot be read: missing file or column, undecodable bytes, empty file."""


class DecodeError(NudgeError):
    """One record cannot become an event; the record goes to the dead-letter store with this reason."""


class ConflictingDuplicate(DecodeError):
    """An event id already applied to this customer arrived again with different content."""


class FutureDated(DecodeError):
    """An event dated beyond the tolerance past the clock; applying it would move the clock."""


class ConfigError(NudgeError):
    """A setting or option is invalid."""


class OutOfRange(DecodeError):
    """A value the state cannot hold, e.g. a purchase date outside 1970..2149."""


# files
class CampaignError(ConfigError):
    """A campaign file is invalid; `lines` holds one "<file>:<line>: <field>: <problem>" per problem."""

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.lines: list[str] = list(lines) if lines is not None else [message]
# policy
class ConsentError(NudgeError):
    """A consent record cannot be read or stored: the file, line and field are named."""


class ArbitrationError(NudgeError):
    """Arbitration was handed a candidate it cannot judge (unknown campaign, customer without context)."""
# delivery
class RenderError(NudgeError):
    """A message cannot be rendered from its template, or the rendered text breaks the advertising law."""


class DeliveryError(NudgeError):
    """A channel could not deliver a message; `retryable` says whether trying again may succeed."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
