"""The summary table both benchmark scripts print at the end."""


def print_table(headers, rows):
    """Prints headers and rows (tuples of strings) as aligned columns."""
    rows = [tuple(headers)] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    for k, r in enumerate(rows):
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if k == 0:
            print("-+-".join("-" * w for w in widths))
