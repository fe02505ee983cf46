"""``python -m conformance``: the same as the ``conformance`` command."""

from conformance.launch import main

if __name__ == "__main__":
    raise SystemExit(main())
