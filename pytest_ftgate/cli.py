"""The `ftgate` console script: dispatches to the subcommand modules (train, adopt, promote, verify, verdict, ...).

Each subcommand module owns its own argparse parser and exposes ``main(argv) -> int``; heavy imports stay
inside them, so `ftgate --help` is instant.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("pytest_ftgate.train", "train a LLaMA-Factory config with full lineage in MLflow"),
    "adopt": ("pytest_ftgate.adopt", "attach lineage and adapter to a run trained by plain llamafactory-cli"),
    "promote": ("pytest_ftgate.promotion", "move a registry alias after human review (e.g. --to production)"),
    "verify": ("pytest_ftgate.attest", "re-check an attestation's digests and signature against an adapter"),
    "verdict": ("pytest_ftgate.verdict", "show a session's verdicts, a killed session's gate journal merged in"),
    "combine": ("pytest_ftgate.combine", "one report for runs gated in several sessions (CI jobs of a sweep)"),
    "human-eval": ("pytest_ftgate.human_eval", "export a blinded rating sheet of a gated run; import the ratings"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ftgate COMMAND [ARGS]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<11} {help_}")
        print("\nThe gate itself runs under pytest: pytest suites --run-id RUN_ID")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        from .errors import did_you_mean

        print(f"ftgate: unknown command {name!r}{did_you_mean(name, COMMANDS, listed=True)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except BrokenPipeError:  # `ftgate verdict --json | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
