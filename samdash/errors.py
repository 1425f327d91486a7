"""One base error for everything a user can cause, so the page and the CLI can
show its message instead of a traceback."""


class SamdashError(Exception):
    """A failure with a message fit to show the user as it is."""


class ImageError(SamdashError):
    """An upload or file that cannot be used as an image."""


class CheckpointError(SamdashError):
    """A checkpoint that is missing, corrupt, or not what it claims to be."""


class DownloadError(CheckpointError):
    """A checkpoint download that failed or delivered the wrong bytes."""


class PromptError(SamdashError):
    """A drawing that cannot be turned into a segmentation prompt."""


class Cancelled(SamdashError):
    """A run the user stopped: nothing it found is kept."""

    def __init__(self, message: str = "Segment everything was cancelled; no objects were added.") -> None:
        super().__init__(message)


class FolderError(SamdashError):
    """A server folder that may not be browsed (outside SAMDASH_IMAGE_ROOTS) or cannot be read."""


class EncoderError(SamdashError):
    """The remote image encoder could not answer: unreachable, timed out, or it refused the request."""
