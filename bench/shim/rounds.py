"""Summaries of interleaved benchmark rounds, shared by the bench/shim scripts."""
import statistics


def ratio_summary(values, refs):
    """Median and quartiles of each round's value over its reference in the
    same round (load that drifts over a run moves both sides alike), as
    '1.234x [1.20-1.28]'."""
    ratios = sorted(v / r for v, r in zip(values, refs))
    q1, q3 = ratios[(len(ratios) - 1) // 4], ratios[(3 * (len(ratios) - 1) + 3) // 4]
    return f"{statistics.median(ratios):.3f}x [{q1:.2f}-{q3:.2f}]"
