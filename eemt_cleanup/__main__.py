"""Allow ``python -m eemt_cleanup``."""

from eemt_cleanup.cli import main

if __name__ == "__main__":
    main()
