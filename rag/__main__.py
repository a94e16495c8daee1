"""`python -m rag` and the `rag` console script.

The egress guard goes up before the CLI module is imported, so that nothing the commands import at module level can
read the offline switches, or open a socket, before the guard exists.
"""

from .sovereign import enforce_offline


def main() -> None:
    """The `rag` console script: guard first, then the commands (rag/cli.py)."""
    enforce_offline()
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
