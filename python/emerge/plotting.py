"""emerge.plot: E with its ±2 SE band against step (or against a trainer metric) for one
or more runs, with matplotlib.

    import emerge
    ax = emerge.plot(["lr0.02", "lr0.08"])                 # from the daemon
    ax = emerge.plot(["mlp"], x="eval_accuracy")           # E against the metric
    ax = emerge.plot({"mlp": results})                     # results you already have
"""


def _series(r, x):
    """(x, E, SE) of a result, or None when it has no E or no x."""
    e = r.get("emergence")
    if not isinstance(e, (int, float)):
        return None
    if x == "step":
        xv = r.get("step") if r.get("step") is not None else r.get("arrival")
    else:
        xv = (r.get("trainer") or {}).get(x)
    if not isinstance(xv, (int, float)):
        return None
    se = r.get("emergence_se")
    return float(xv), float(e), float(se) if isinstance(se, (int, float)) else 0.0


def plot(runs, x="step", client=None, ax=None, band=2.0):
    """runs: run names (read through client, a Client by default) or {name: [results]}.
    x: "step" or the name of a trainer metric. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt  # optional: only this needs it
    if isinstance(runs, str):  # one run's name
        runs = [runs]
    if not isinstance(runs, dict):
        if client is None:
            from .client import Client
            client = Client()
        runs = {name: client.history(name) for name in runs}
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    modes = set()
    for name, results in runs.items():
        pts = sorted(p for p in (_series(r, x) for r in results) if p)
        modes.update(r.get("mode") for r in results)
        if not pts:
            continue
        xs, es, ses = zip(*pts)
        (line,) = ax.plot(xs, es, marker="o", label=f"{name} ({results[-1].get('mode', '?')})")
        ax.fill_between(xs, [e - band * s for e, s in zip(es, ses)], [e + band * s for e, s in zip(es, ses)],
                        color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("training step" if x == "step" else x)
    ax.set_ylabel(f"E (band ±{band:g} SE)")
    if len(modes) > 1:
        ax.set_title("runs measured in different modes: their E values do not compare", color="#a4460b")
    ax.legend()
    return ax
