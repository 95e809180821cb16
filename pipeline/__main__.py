"""Entry point for `python -m pipeline` and `accelerate launch -m pipeline`."""

from pipeline.cli.app import main

if __name__ == "__main__":
    main()
