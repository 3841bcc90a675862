"""One base class for every error a user can cause, so front ends print one clear line."""


class ComposerError(ValueError):
    """Bad input, a bad brick or a bad library: the message names the problem."""
