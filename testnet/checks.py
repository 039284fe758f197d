"""A tally of checks for the scripts run by hand against a real Conduit: `FAIL` lines, a summary,
and the exit status (1 if any check failed)."""
import sys


class Checks:
    def __init__(self):
        self.total = self.failed = 0

    def __call__(self, ok, what):
        self.total += 1
        if not ok:
            self.failed += 1
            print(f"FAIL {what}")

    def finish(self, summary):
        print(f"{self.total - self.failed}/{self.total} checks passed; {summary}")
        sys.exit(1 if self.failed else 0)
