"""Interleaved benchmark rounds and their summaries, shared by the bench/shim scripts."""
import resource
import statistics


def interleaved(rounds, configs):
    """Yields (round, config): every config once a round, every other round
    in reverse order, so that load drifting within a round hits all alike."""
    for r in range(rounds):
        for config in (configs if r % 2 == 0 else configs[::-1]):
            yield r, config


class ChildUsage:
    """What the children reaped inside a `with ChildUsage() as u:` block
    used: u.cpu (user+sys seconds) and u.minflt (minor page faults)."""

    def __enter__(self):
        self._before = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc):
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (after.ru_utime - self._before.ru_utime) + (after.ru_stime - self._before.ru_stime)
        self.minflt = after.ru_minflt - self._before.ru_minflt
        return False


def ratio_summary(values, refs):
    """Median and quartiles of each round's value over its reference in the
    same round (load that drifts over a run moves both sides alike), as
    '1.234x [1.20-1.28]'."""
    ratios = sorted(v / r for v, r in zip(values, refs))
    q1, q3 = ratios[(len(ratios) - 1) // 4], ratios[(3 * (len(ratios) - 1) + 3) // 4]
    return f"{statistics.median(ratios):.3f}x [{q1:.2f}-{q3:.2f}]"
