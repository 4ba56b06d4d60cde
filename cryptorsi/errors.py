"""The error hierarchy of cryptorsi. Every error a user can meet is one of these, with a one-line message."""

from __future__ import annotations

__all__ = [
    "CryptoRSIError",
    "ConfigError",
    "DatabaseError",
    "SourceError",
    "SourceUnavailable",
    "SourceRefused",
    "RunFailed",
    "RunInterrupted",
]


class CryptoRSIError(Exception):
    """Base of every cryptorsi error."""


class ConfigError(CryptoRSIError, ValueError):
    """An invalid configuration value. ``field`` names the offending ``AnalysisConfig`` field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class DatabaseError(CryptoRSIError):
    """The database file cannot be used (not SQLite, not a cryptorsi database, unreadable...)."""


class SourceError(CryptoRSIError):
    """A market data source failed for one request (a coin, a page); the run can go on."""


class SourceUnavailable(SourceError):
    """A market data source cannot be reached at all; the run cannot go on."""


class SourceRefused(SourceUnavailable):
    """The source's host refuses this client whatever it asks (HTTP 451 for a restricted location, a firewall's
    403); the message names the ways out (another host, the offline sources)."""


class RunFailed(CryptoRSIError):
    """The analysis could not complete (e.g. the coin list could not be fetched)."""


class RunInterrupted(CryptoRSIError):
    """The analysis was stopped before it completed; its session is marked ``interrupted``."""
