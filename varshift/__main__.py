"""``python -m varshift`` runs the command line interface."""

from varshift.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
